//! The direct-call events of protocol §5 (`callUser`, `acceptCallNew`, `rejectCallNew`,
//! `cancelCall`, `getCallRequests`) and `getCallHistory` (§10): parse, validate, call
//! `services::calls`.
//!
//! Guests (seed 004's anonymous participants) take part only in their conversation's calls,
//! so every event here refuses them with `FORBIDDEN`.

use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::DomainError;
use switchboard_domain::limits::Limits;
use switchboard_protocol::calls::{
    AcceptCallNewResponse, CallRef, CallRequestsResponse, CallUser, CallUserResponse, RejectCallNew,
};
use switchboard_protocol::{Empty, StatusMessage, events};

use super::dispatch::{Ctx, Validate, on};
use crate::error::{AppError, AppResult};
use crate::services::calls::{self, Actor};

pub fn install<A: Adapter>(app: &crate::app::SharedApp, socket: &SocketRef<A>) {
    on(app, socket, events::CALL_USER, call_user);
    on(app, socket, events::ACCEPT_CALL_NEW, accept_call_new);
    on(app, socket, events::REJECT_CALL_NEW, reject_call_new);
    on(app, socket, events::CANCEL_CALL, cancel_call);
    on(app, socket, events::GET_CALL_REQUESTS, get_call_requests);
    on(app, socket, events::GET_CALL_HISTORY, get_call_history);
}

/// Longest reason a callee may send with `rejectCallNew` (it is relayed to the caller).
const MAX_REASON: usize = 256;

impl Validate for CallUser {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("callId", &self.call_id)?;
        limits.check_id("targetUserId", &self.target_user_id)?;
        Ok(())
    }
}

impl Validate for CallRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("callId", &self.call_id)?)
    }
}

impl Validate for RejectCallNew {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("callId", &self.call_id)?;
        if self.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(AppError::invalid(format!(
                "reason must be at most {MAX_REASON} bytes"
            )));
        }
        Ok(())
    }
}

/// `getCallHistory {limit?, before?}` (§10, the socket form of `GET /api/me/calls`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetCallHistory {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    before: Option<String>,
}

impl Validate for GetCallHistory {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        if let Some(before) = &self.before {
            limits.check_id("before", before)?;
        }
        if self.limit == Some(0) {
            return Err(AppError::invalid("limit must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallHistoryResponse {
    calls: Vec<serde_json::Value>,
    has_more: bool,
}

fn not_guest(ctx: &Ctx) -> AppResult<()> {
    if ctx.session.identity.guest_conversation.is_some() {
        return Err(DomainError::Forbidden("guests cannot place direct calls".into()).into());
    }
    Ok(())
}

async fn call_user(ctx: Ctx, payload: CallUser) -> AppResult<CallUserResponse> {
    not_guest(&ctx)?;
    let identity = &ctx.session.identity;
    let caller = Actor {
        user_id: &identity.user_id,
        name: &identity.name,
        device_id: &ctx.session.device_id,
        socket_id: &ctx.session.socket_id,
    };
    calls::call_user(&ctx.app, &caller, &payload.call_id, &payload.target_user_id).await
}

async fn accept_call_new(ctx: Ctx, payload: CallRef) -> AppResult<AcceptCallNewResponse> {
    not_guest(&ctx)?;
    let identity = &ctx.session.identity;
    let callee = Actor {
        user_id: &identity.user_id,
        name: &identity.name,
        device_id: &ctx.session.device_id,
        socket_id: &ctx.session.socket_id,
    };
    calls::accept(&ctx.app, &callee, &payload.call_id).await
}

async fn reject_call_new(ctx: Ctx, payload: RejectCallNew) -> AppResult<StatusMessage> {
    not_guest(&ctx)?;
    let identity = &ctx.session.identity;
    let callee = Actor {
        user_id: &identity.user_id,
        name: &identity.name,
        device_id: &ctx.session.device_id,
        socket_id: &ctx.session.socket_id,
    };
    calls::reject(
        &ctx.app,
        &callee,
        &payload.call_id,
        payload.reason.as_deref(),
    )
    .await
}

async fn cancel_call(ctx: Ctx, payload: CallRef) -> AppResult<StatusMessage> {
    not_guest(&ctx)?;
    calls::cancel(&ctx.app, ctx.session.user_id(), &payload.call_id).await
}

async fn get_call_requests(ctx: Ctx, _: Empty) -> AppResult<CallRequestsResponse> {
    not_guest(&ctx)?;
    calls::requests(&ctx.app, ctx.session.user_id()).await
}

async fn get_call_history(ctx: Ctx, payload: GetCallHistory) -> AppResult<CallHistoryResponse> {
    not_guest(&ctx)?;
    let (calls, has_more) = calls::history(
        &ctx.app,
        ctx.session.user_id(),
        payload.before.as_deref(),
        payload.limit,
    )
    .await?;
    Ok(CallHistoryResponse { calls, has_more })
}
