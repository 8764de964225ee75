//! Device sessions and liveness: what happens when a socket connects or disconnects.
//!
//! The session record's transitions are the pure rules of `switchboard_domain::devices`,
//! applied with the store's compare-and-set so concurrent connects of the same device on
//! different instances agree on which socket holds it.

use std::time::Duration;

use switchboard_domain::devices::{self, DeviceConnect, DeviceSession};
use switchboard_domain::{DomainError, Millis};
use switchboard_store::{Transition, UpdateError, keys, update_record};

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::presence;

/// The outcome of admitting a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The socket this connection displaced, if the device was connected elsewhere.
    pub replaced_socket: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("too_many_devices")]
    TooManyDevices,
    #[error("unavailable")]
    Backend(#[from] AppError),
}

fn session_ttl(app: &App) -> Duration {
    Duration::from_secs(app.settings.timers.session_ttl_secs.max(1))
}

fn max_devices(app: &App) -> usize {
    app.settings
        .auth
        .max_devices_per_user
        .min(app.settings.limits.devices_per_user)
}

/// Admits a device before its socket joins: checks the device cap, records the session,
/// and tells a socket that held the same device that it has been replaced.
pub async fn admit(app: &App, connect: &DeviceConnect) -> Result<Admitted, AdmitError> {
    let now = app.now();
    let live = app
        .store
        .presence_get(std::slice::from_ref(&connect.user_id), now)
        .await
        .map_err(AppError::from)?
        .pop()
        .flatten()
        .map(|entry| entry.devices)
        .unwrap_or_default();
    if !devices::within_device_cap(&live, &connect.device_id, max_devices(app)) {
        return Err(AdmitError::TooManyDevices);
    }

    let ttl = session_ttl(app);
    let mut replaced = None;
    update_record::<_, DeviceSession, DomainError, _>(
        app.store.as_ref(),
        &keys::session(&connect.user_id, &connect.device_id),
        |current| {
            let (next, displaced) = devices::connect(current, connect, now);
            replaced = displaced;
            Ok(Transition::Write(next, Some(ttl)))
        },
    )
    .await
    .map_err(update_error)?;
    app.store
        .index_add(
            &keys::sessions(&connect.user_id),
            std::slice::from_ref(&connect.device_id),
            Some(ttl),
        )
        .await
        .map_err(AppError::from)?;

    app.store
        .index_add(
            &keys::session_users(),
            std::slice::from_ref(&connect.user_id),
            None,
        )
        .await
        .map_err(AppError::from)?;
    log_security_event(
        app,
        &connect.user_id,
        &connect.device_id,
        "connect",
        connect.ip.as_deref(),
        connect.user_agent.as_deref(),
    )
    .await;

    if let Some(old) = &replaced {
        tracing::info!(user_id = %connect.user_id, device_id = %connect.device_id, old_socket = %old, "device replaced");
        let room = rooms::device(&connect.user_id, &connect.device_id);
        let notice = serde_json::json!({ "deviceId": connect.device_id, "reason": "replaced" });
        app.outbox
            .emit(
                room.clone(),
                switchboard_protocol::events::SESSION_REPLACED,
                notice,
            )
            .await;
        app.outbox.disconnect(room).await;
    }
    Ok(Admitted {
        replaced_socket: replaced,
    })
}

/// Marks the device live; friends hear `friend_online` if it is the user's first device.
pub async fn mark_connected(
    app: &App,
    user_id: &str,
    name: &str,
    device_id: &str,
) -> AppResult<()> {
    let change = app
        .store
        .presence_connect(
            user_id,
            device_id,
            app.now(),
            app.settings.timers.presence_ttl(),
        )
        .await?;
    presence::device_connected(app, user_id, name, change).await
}

/// Releases the device if `socket_id` still holds it. Returns whether it did.
pub async fn release(
    app: &App,
    user_id: &str,
    device_id: &str,
    socket_id: &str,
) -> AppResult<bool> {
    let now: Millis = app.now();
    let ttl = session_ttl(app);
    let mut held = false;
    update_record::<_, DeviceSession, DomainError, _>(
        app.store.as_ref(),
        &keys::session(user_id, device_id),
        |current| match devices::disconnect(current, socket_id, now) {
            Some(next) => {
                held = true;
                Ok(Transition::Write(next, Some(ttl)))
            }
            None => {
                held = false;
                Err(DomainError::Conflict("replaced".into()))
            }
        },
    )
    .await
    .or_else(|e| match e {
        UpdateError::Rejected(_) => Ok(None),
        other => Err(update_error(other)),
    })?;
    if held {
        let change = app
            .store
            .presence_disconnect(user_id, device_id, now)
            .await?;
        log_security_event(app, user_id, device_id, "disconnect", None, None).await;
        presence::device_released(app, user_id, change).await?;
    }
    Ok(held)
}

fn update_error(e: UpdateError<DomainError>) -> AppError {
    match e {
        UpdateError::Rejected(d) => AppError::Domain(d),
        UpdateError::Store(s) => AppError::Store(s),
    }
}

/// A user's device sessions that have not expired, connected or not.
pub async fn list(app: &App, user_id: &str) -> AppResult<Vec<DeviceSession>> {
    let devices = app.store.index_members(&keys::sessions(user_id)).await?;
    let mut sessions = Vec::with_capacity(devices.len());
    let mut gone = Vec::new();
    for device_id in devices {
        match app.store.get(&keys::session(user_id, &device_id)).await? {
            Some(record) => match serde_json::from_str::<DeviceSession>(&record.value) {
                Ok(session) => sessions.push(session),
                Err(error) => {
                    tracing::warn!(%user_id, %device_id, %error, "unreadable session record")
                }
            },
            None => gone.push(device_id),
        }
    }
    if !gone.is_empty() {
        app.store
            .index_remove(&keys::sessions(user_id), &gone)
            .await?;
    }
    sessions.sort_by_key(|s| std::cmp::Reverse(s.last_active_at));
    Ok(sessions)
}

/// Ends a device session: the record goes, and its socket (on whatever instance) is
/// disconnected at once. Returns false if there was no such session.
pub async fn revoke(app: &App, user_id: &str, device_id: &str) -> AppResult<bool> {
    let key = keys::session(user_id, device_id);
    let deleted = loop {
        match app.store.get(&key).await? {
            None => break false,
            Some(record) => {
                if app.store.compare_and_delete(&key, record.version).await? {
                    break true;
                }
            }
        }
    };
    app.store
        .index_remove(&keys::sessions(user_id), &[device_id.to_string()])
        .await?;
    if deleted {
        // The socket's own disconnect finds no record and leaves presence alone, so the
        // device is taken offline here.
        let change = app
            .store
            .presence_disconnect(user_id, device_id, app.now())
            .await?;
        app.outbox
            .disconnect(rooms::device(user_id, device_id))
            .await;
        log_security_event(app, user_id, device_id, "revoked", None, None).await;
        presence::device_released(app, user_id, change).await?;
        tracing::info!(%user_id, %device_id, "session revoked");
    }
    Ok(deleted)
}

/// How many connects and disconnects a user's security log keeps (seed 001).
const SECURITY_LOG_ENTRIES: usize = 100;
/// The security log outlives the user's last activity by this long.
const SECURITY_LOG_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Appends to the user's security log. A failure is logged, never fatal: the log is an
/// audit aid, not state anything depends on.
async fn log_security_event(
    app: &App,
    user_id: &str,
    device_id: &str,
    event: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
) {
    let entry = serde_json::json!({ "event": event, "deviceId": device_id, "ip": ip, "userAgent": user_agent, "at": app.now() });
    if let Err(error) = app
        .store
        .log_push(
            &keys::security_log(user_id),
            &entry.to_string(),
            SECURITY_LOG_ENTRIES,
            Some(SECURITY_LOG_TTL),
        )
        .await
    {
        tracing::warn!(%user_id, %error, "could not append to the security log");
    }
}

/// The user's security log, newest first.
pub async fn security_log(app: &App, user_id: &str) -> AppResult<Vec<serde_json::Value>> {
    let entries = app
        .store
        .log_range(&keys::security_log(user_id), SECURITY_LOG_ENTRIES)
        .await?;
    Ok(entries
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect())
}

/// Extends the sessions of devices connected here: a device that stays connected is active,
/// so its session must not lapse under it.
pub async fn refresh_connected(app: &App, devices: &[(String, String)]) -> AppResult<()> {
    let now = app.now();
    let ttl = session_ttl(app);
    for (user_id, device_id) in devices {
        update_record::<_, DeviceSession, DomainError, _>(
            app.store.as_ref(),
            &keys::session(user_id, device_id),
            |current| match current {
                Some(session) => Ok(Transition::Write(
                    DeviceSession {
                        last_active_at: now,
                        ..session
                    },
                    Some(ttl),
                )),
                None => Err(DomainError::NotFound("revoked".into())),
            },
        )
        .await
        .or_else(|e| match e {
            UpdateError::Rejected(_) => Ok(None),
            other => Err(update_error(other)),
        })?;
        app.store
            .index_add(
                &keys::sessions(user_id),
                std::slice::from_ref(device_id),
                Some(ttl),
            )
            .await?;
    }
    Ok(())
}

/// The timer kind of the periodic sweep of expired sessions.
pub const CLEANUP_TIMER: &str = "session_cleanup";

/// Seed 001's cleanup job: session records expire by themselves, so the sweep prunes the
/// indexes that point at them. It runs from the deadline queue, so one instance does it
/// each period, and schedules its next run.
pub async fn sweep_expired(app: &App) -> AppResult<usize> {
    let users = app.store.index_members(&keys::session_users()).await?;
    let mut emptied = Vec::new();
    for user_id in &users {
        if list(app, user_id).await?.is_empty() {
            emptied.push(user_id.clone());
        }
    }
    if !emptied.is_empty() {
        app.store
            .index_remove(&keys::session_users(), &emptied)
            .await?;
    }
    schedule_sweep(app).await?;
    Ok(emptied.len())
}

/// (Re)schedules the next sweep one interval from now.
pub async fn schedule_sweep(app: &App) -> AppResult<()> {
    let interval = Duration::from_secs(app.settings.timers.session_cleanup_interval_secs.max(1));
    let timer = switchboard_store::Timer {
        id: format!("job:{CLEANUP_TIMER}"),
        kind: CLEANUP_TIMER.to_string(),
        payload: "{}".to_string(),
        due_at: app.now() + interval.as_millis() as i64,
    };
    app.store.timer_schedule(&timer).await?;
    Ok(())
}
