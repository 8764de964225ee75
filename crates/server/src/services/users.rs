//! Users: upserted on every connect, read by `users:get` and the admin API.

use switchboard_protocol::session::UserInfo;

use crate::app::App;
use crate::error::AppResult;

pub async fn upsert(app: &App, user_id: &str, name: &str) -> AppResult<()> {
    app.db.upsert_user(user_id, name, app.now()).await?;
    Ok(())
}

/// The known users among `user_ids`, in the order asked; unknown ids are left out.
pub async fn get_many(app: &App, user_ids: &[String]) -> AppResult<Vec<UserInfo>> {
    let rows = app.db.get_users(user_ids).await?;
    let mut users: Vec<UserInfo> = Vec::with_capacity(rows.len());
    for id in user_ids {
        if users.iter().any(|u| &u.user_id == id) {
            continue;
        }
        if let Some(row) = rows.iter().find(|r| &r.id == id) {
            users.push(UserInfo {
                user_id: row.id.clone(),
                name: row.name.clone(),
            });
        }
    }
    Ok(users)
}
