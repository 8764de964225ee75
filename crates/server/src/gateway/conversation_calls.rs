//! The conversation-call events of protocol §7 (`call:*`): parse, validate against the
//! limits, call `services::conversation_calls`. Every failure is acked and also emitted as
//! `call:error` (see [`on_call`]).
//!
//! Guests (tokens with `guest: true` and a `conversationId`) take part here, in their
//! conversation's calls only; their anonymous id is the token's subject.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::DomainError;
use switchboard_domain::limits::Limits;
use switchboard_protocol::conversation_calls::{
    CallConnected, CallForceLeave, CallForceLeaveResponse, CallInitiate, CallInitiateResponse,
    CallJoin, CallJoinResponse, CallLeave, CallOk, CallQuality, CallSignal, CallToggleMedia,
    SignalType,
};
use switchboard_protocol::events;
use switchboard_protocol::sfu::MediaKind;

use super::dispatch::{Ctx, Validate, on_call};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::conversation_calls::{self as service, Peer};

/// Largest `call:quality` statistics object, as serialized JSON (protocol §7).
pub const MAX_QUALITY_BYTES: usize = 4 * 1024;
/// Largest opaque `settings` object of `call:initiate` / `call:join`, as serialized JSON.
pub const MAX_SETTINGS_BYTES: usize = 4 * 1024;

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on_call(app, socket, events::CALL_INITIATE, initiate);
    on_call(app, socket, events::CALL_JOIN, join);
    on_call(app, socket, events::CALL_LEAVE, leave);
    on_call(app, socket, events::CALL_SIGNAL, signal);
    on_call(app, socket, events::CALL_TOGGLE_AUDIO, toggle_audio);
    on_call(app, socket, events::CALL_TOGGLE_VIDEO, toggle_video);
    on_call(app, socket, events::CALL_FORCE_LEAVE, force_leave);
    on_call(app, socket, events::CALL_CONNECTED, connected);
    on_call(app, socket, events::CALL_QUALITY, quality);
}

fn peer(ctx: &Ctx) -> Peer {
    Peer {
        peer_id: ctx.session.identity.user_id.clone(),
        guest_conversation: ctx.session.identity.guest_conversation.clone(),
        socket_id: ctx.session.socket_id.clone(),
        device_id: ctx.session.device_id.clone(),
    }
}

fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

fn check_settings(settings: Option<&serde_json::Value>) -> Result<(), AppError> {
    match settings {
        None => Ok(()),
        Some(s) if !s.is_object() => Err(AppError::invalid("settings must be an object")),
        Some(s) if json_len(s) > MAX_SETTINGS_BYTES => Err(DomainError::TooLarge(format!(
            "settings is larger than {MAX_SETTINGS_BYTES} bytes"
        ))
        .into()),
        Some(_) => Ok(()),
    }
}

impl Validate for CallInitiate {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        check_settings(self.settings.as_ref())
    }
}

async fn initiate(ctx: Ctx, p: CallInitiate) -> AppResult<CallInitiateResponse> {
    service::initiate(&ctx.app, &peer(&ctx), p).await
}

impl Validate for CallJoin {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("callId", &self.call_id)?;
        check_settings(self.settings.as_ref())
    }
}

async fn join(ctx: Ctx, p: CallJoin) -> AppResult<CallJoinResponse> {
    service::join(&ctx.app, &peer(&ctx), &p.call_id).await
}

// `CallLeave` and `CallConnected` are `calls::CallRef`, validated in `gateway/calls.rs`.

async fn leave(ctx: Ctx, p: CallLeave) -> AppResult<CallOk> {
    service::leave(&ctx.app, &peer(&ctx), &p.call_id).await?;
    Ok(CallOk {})
}

async fn connected(ctx: Ctx, p: CallConnected) -> AppResult<CallOk> {
    service::report_connected(&ctx.app, &peer(&ctx), &p.call_id).await?;
    Ok(CallOk {})
}

impl Validate for CallSignal {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("callId", &self.call_id)?;
        limits.check_id("signal.to", &self.signal.to)?;
        let s = &self.signal;
        match s.signal_type {
            SignalType::Offer | SignalType::Answer => {
                let Some(sdp) = &s.sdp else {
                    return Err(AppError::invalid("an offer or answer carries sdp"));
                };
                if !(sdp.is_string() || sdp.is_object()) {
                    return Err(AppError::invalid("sdp must be a string or an object"));
                }
                if json_len(sdp) > limits.sdp_bytes {
                    return Err(DomainError::TooLarge(format!(
                        "sdp is larger than {} bytes",
                        limits.sdp_bytes
                    ))
                    .into());
                }
                if s.candidate.is_some() {
                    return Err(AppError::invalid("an offer or answer carries no candidate"));
                }
            }
            SignalType::IceCandidate => {
                let Some(candidate) = &s.candidate else {
                    return Err(AppError::invalid(
                        "an ice-candidate signal carries candidate",
                    ));
                };
                if !(candidate.is_string() || candidate.is_object()) {
                    return Err(AppError::invalid("candidate must be a string or an object"));
                }
                if json_len(candidate) > limits.ice_candidate_bytes {
                    return Err(DomainError::TooLarge(format!(
                        "candidate is larger than {} bytes",
                        limits.ice_candidate_bytes
                    ))
                    .into());
                }
                if s.sdp.is_some() {
                    return Err(AppError::invalid("an ice-candidate signal carries no sdp"));
                }
            }
        }
        Ok(())
    }
}

async fn signal(ctx: Ctx, p: CallSignal) -> AppResult<CallOk> {
    service::signal(&ctx.app, &peer(&ctx), p).await?;
    Ok(CallOk {})
}

impl Validate for CallToggleMedia {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("callId", &self.call_id)?)
    }
}

async fn toggle_audio(ctx: Ctx, p: CallToggleMedia) -> AppResult<CallOk> {
    service::toggle_media(
        &ctx.app,
        &peer(&ctx),
        &p.call_id,
        MediaKind::Audio,
        p.enabled,
    )
    .await?;
    Ok(CallOk {})
}

async fn toggle_video(ctx: Ctx, p: CallToggleMedia) -> AppResult<CallOk> {
    service::toggle_media(
        &ctx.app,
        &peer(&ctx),
        &p.call_id,
        MediaKind::Video,
        p.enabled,
    )
    .await?;
    Ok(CallOk {})
}

impl Validate for CallForceLeave {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("conversationId", &self.conversation_id)?)
    }
}

async fn force_leave(ctx: Ctx, p: CallForceLeave) -> AppResult<CallForceLeaveResponse> {
    let ended_call_ids = service::force_leave(&ctx.app, &peer(&ctx), &p.conversation_id).await?;
    Ok(CallForceLeaveResponse { ended_call_ids })
}

impl Validate for CallQuality {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("callId", &self.call_id)?;
        if json_len(&self.stats) > MAX_QUALITY_BYTES {
            return Err(DomainError::TooLarge(format!(
                "stats is larger than {MAX_QUALITY_BYTES} bytes"
            ))
            .into());
        }
        Ok(())
    }
}

async fn quality(ctx: Ctx, p: CallQuality) -> AppResult<CallOk> {
    service::quality(&ctx.app, &peer(&ctx), &p.call_id, &p.stats).await?;
    Ok(CallOk {})
}
