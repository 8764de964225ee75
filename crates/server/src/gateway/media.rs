//! The SFU events of protocol §8: parse, validate against the limits, call
//! `services::media`. Like the room events, they refuse guests.

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::DomainError;
use switchboard_domain::limits::Limits;
use switchboard_protocol::sfu::{
    ConnectTransport, Consume, ConsumeResponse, ConsumerParams, ConsumerRef, CreateTransport,
    CreateTransportResponse, MediaSource, Produce, ProduceResponse, ProducerRef,
    RouterRtpCapabilitiesResponse, SetConsumerPreferredLayers, TransportDirection,
};
use switchboard_protocol::{Empty, events, rooms::RoomRef};

use super::dispatch::{Ctx, Validate, on};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::media::{self, Caller};

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on(
        app,
        socket,
        events::GET_ROUTER_RTP_CAPABILITIES,
        router_capabilities,
    );
    on(app, socket, events::CREATE_TRANSPORT, create_transport);
    on(app, socket, events::CONNECT_TRANSPORT, connect_transport);
    on(app, socket, events::PRODUCE, produce);
    on(app, socket, events::CONSUME, consume);
    on(app, socket, events::RESUME_CONSUMER, resume_consumer);
    on(app, socket, events::PAUSE_PRODUCER, pause_producer);
    on(app, socket, events::RESUME_PRODUCER, resume_producer);
    on(app, socket, events::CLOSE_PRODUCER, close_producer);
    on(
        app,
        socket,
        events::SET_CONSUMER_PREFERRED_LAYERS,
        set_preferred_layers,
    );
}

fn caller(ctx: &Ctx) -> AppResult<Caller> {
    if ctx.session.identity.guest_conversation.is_some() {
        return Err(DomainError::Forbidden("guests may only take part in calls".into()).into());
    }
    Ok(Caller {
        user_id: ctx.session.identity.user_id.clone(),
        device_id: ctx.session.device_id.clone(),
        socket_id: ctx.session.socket_id.clone(),
    })
}

/// An object field of at most the SDP limit (RTP parameters and capabilities stand in
/// for SDP here).
fn check_object(limits: &Limits, field: &str, value: &Value) -> Result<(), AppError> {
    if !value.is_object() {
        return Err(AppError::invalid(format!("{field} must be an object")));
    }
    if value.to_string().len() > limits.sdp_bytes {
        return Err(DomainError::TooLarge(format!(
            "{field} is larger than {} bytes",
            limits.sdp_bytes
        ))
        .into());
    }
    Ok(())
}

async fn router_capabilities(ctx: Ctx, p: RoomRef) -> AppResult<RouterRtpCapabilitiesResponse> {
    let who = caller(&ctx)?;
    let rtp_capabilities = media::router_capabilities(&ctx.app, &who, &p.room_id).await?;
    Ok(RouterRtpCapabilitiesResponse { rtp_capabilities })
}

impl Validate for CreateTransport {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        if let Some(caps) = &self.rtp_capabilities {
            check_object(limits, "rtpCapabilities", caps)?;
        }
        Ok(())
    }
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> AppResult<T> {
    serde_json::from_value(value).map_err(|e| AppError::Internal(format!("media answer: {e}")))
}

async fn create_transport(ctx: Ctx, p: CreateTransport) -> AppResult<CreateTransportResponse> {
    let who = caller(&ctx)?;
    let send = p.direction == TransportDirection::Send;
    let params =
        media::create_transport(&ctx.app, &who, &p.room_id, send, p.rtp_capabilities).await?;
    Ok(CreateTransportResponse {
        params: from_value(params)?,
    })
}

impl Validate for ConnectTransport {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("transportId", &self.transport_id)?;
        check_object(limits, "dtlsParameters", &self.dtls_parameters)
    }
}

async fn connect_transport(ctx: Ctx, p: ConnectTransport) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::connect_transport(&ctx.app, &who, &p.transport_id, &p.dtls_parameters).await?;
    Ok(Empty {})
}

impl Validate for Produce {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        limits.check_id("transportId", &self.transport_id)?;
        check_object(limits, "rtpParameters", &self.rtp_parameters)?;
        if let Some(app_data) = &self.app_data {
            check_object(limits, "appData", app_data)?;
            if app_data.get("source").is_some() && self.source().is_none() {
                return Err(AppError::invalid(format!(
                    "appData.source must be one of {}",
                    MediaSource::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }
}

async fn produce(ctx: Ctx, p: Produce) -> AppResult<ProduceResponse> {
    let who = caller(&ctx)?;
    let producer_id = media::produce(
        &ctx.app,
        &who,
        &p.room_id,
        &p.transport_id,
        p.kind,
        &p.rtp_parameters,
        p.app_data,
    )
    .await?;
    Ok(ProduceResponse { producer_id })
}

impl Validate for Consume {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        limits.check_id("producerId", &self.producer_id)?;
        check_object(limits, "rtpCapabilities", &self.rtp_capabilities)
    }
}

async fn consume(ctx: Ctx, p: Consume) -> AppResult<ConsumeResponse> {
    let who = caller(&ctx)?;
    let params: ConsumerParams = from_value(
        media::consume(
            &ctx.app,
            &who,
            &p.room_id,
            &p.producer_id,
            p.rtp_capabilities,
        )
        .await?,
    )?;
    Ok(ConsumeResponse { params })
}

impl Validate for ConsumerRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        Ok(limits.check_id("consumerId", &self.consumer_id)?)
    }
}

async fn resume_consumer(ctx: Ctx, p: ConsumerRef) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::resume_consumer(&ctx.app, &who, &p.room_id, &p.consumer_id).await?;
    Ok(Empty {})
}

impl Validate for ProducerRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        Ok(limits.check_id("producerId", &self.producer_id)?)
    }
}

async fn pause_producer(ctx: Ctx, p: ProducerRef) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::set_producer_paused(&ctx.app, &who, &p.room_id, &p.producer_id, true).await?;
    Ok(Empty {})
}

async fn resume_producer(ctx: Ctx, p: ProducerRef) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::set_producer_paused(&ctx.app, &who, &p.room_id, &p.producer_id, false).await?;
    Ok(Empty {})
}

async fn close_producer(ctx: Ctx, p: ProducerRef) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::close_producer(&ctx.app, &who, &p.room_id, &p.producer_id).await?;
    Ok(Empty {})
}

impl Validate for SetConsumerPreferredLayers {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        Ok(limits.check_id("consumerId", &self.consumer_id)?)
    }
}

async fn set_preferred_layers(ctx: Ctx, p: SetConsumerPreferredLayers) -> AppResult<Empty> {
    let who = caller(&ctx)?;
    media::set_preferred_layers(&ctx.app, &who, &p.room_id, &p.consumer_id).await?;
    Ok(Empty {})
}
