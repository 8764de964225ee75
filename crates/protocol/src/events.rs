//! Socket.IO event names, one constant per event of protocol.md.
//!
//! # Naming
//!
//! A constant is its wire name in SCREAMING_SNAKE_CASE: `:` and `-` become
//! `_`, and camelCase words are split (`message:send` → [`MESSAGE_SEND`],
//! `callUser` → [`CALL_USER`]). Two pairs of names would collide; the room
//! events of §6 take a `ROOM_` prefix there:
//!
//! | wire name | constant |
//! |---|---|
//! | `call:ended` (§7) | [`CALL_ENDED`] |
//! | `callEnded` (§6) | [`ROOM_CALL_ENDED`] |
//! | `message:reaction-updated` (§9) | [`MESSAGE_REACTION_UPDATED`] |
//! | `messageReactionUpdated` (§6) | [`ROOM_MESSAGE_REACTION_UPDATED`] |
//!
//! `call:signal` goes both ways and has a single constant, [`CALL_SIGNAL`].
//!
//! [`CLIENT_EVENTS`] and [`SERVER_EVENTS`] list every name by direction.

// §2 Handshake, identity and devices -----------------------------------------

/// C→S `auth:refresh {token}` → `{success}` (§2).
pub const AUTH_REFRESH: &str = "auth:refresh";
/// C→S `users:get {userIds}` → `{success, users}` (§2).
pub const USERS_GET: &str = "users:get";
/// C→S `getCallHistory {limit?, before?}` → `{success, calls}` (§10, socket form).
pub const GET_CALL_HISTORY: &str = "getCallHistory";
/// S→C `session {userId, name, deviceId, socketId, serverTime}`, right after connect (§2).
pub const SESSION: &str = "session";
/// S→C `auth:expired {}`: the token expired and was not refreshed (§2).
pub const AUTH_EXPIRED: &str = "auth:expired";
/// S→C `session:replaced {deviceId, reason}`: another socket took this device id (§2).
pub const SESSION_REPLACED: &str = "session:replaced";

// §4 Presence ------------------------------------------------------------------

/// C→S `presence:status {status}` → `{success, status}` (§4).
pub const PRESENCE_STATUS: &str = "presence:status";
/// C→S `presence:get {userIds}` → `{success, presence}` (§4).
pub const PRESENCE_GET: &str = "presence:get";
/// C→S `getOnlineUsers {}` → `{success, users}` (§4).
pub const GET_ONLINE_USERS: &str = "getOnlineUsers";
/// C→S `getFriends {}` → `{success, friends}` (§4).
pub const GET_FRIENDS: &str = "getFriends";
/// S→C `onlineUsersUpdated {users}` (§4).
pub const ONLINE_USERS_UPDATED: &str = "onlineUsersUpdated";
/// S→C `friend_online {userId, name, timestamp}` (§4).
pub const FRIEND_ONLINE: &str = "friend_online";
/// S→C `friend_offline {userId, timestamp}` (§4).
pub const FRIEND_OFFLINE: &str = "friend_offline";
/// S→C `friend_in_call {userId, timestamp}` (§4).
pub const FRIEND_IN_CALL: &str = "friend_in_call";
/// S→C `friend_out_of_call {userId, timestamp}` (§4).
pub const FRIEND_OUT_OF_CALL: &str = "friend_out_of_call";
/// S→C `friend_status {userId, status, timestamp}` (§4).
pub const FRIEND_STATUS: &str = "friend_status";

// §5 Direct calls (ringing) ------------------------------------------------------

/// C→S `callUser {callId, targetUserId}` → `{success, delivery?}` (§5).
pub const CALL_USER: &str = "callUser";
/// C→S `acceptCallNew {callId}` → `{success, roomId, room}` (§5).
pub const ACCEPT_CALL_NEW: &str = "acceptCallNew";
/// C→S `rejectCallNew {callId, reason?}` → `{success, message}` (§5).
pub const REJECT_CALL_NEW: &str = "rejectCallNew";
/// C→S `cancelCall {callId}` → `{success, message}` (§5).
pub const CANCEL_CALL: &str = "cancelCall";
/// C→S `getCallRequests {}` → `{success, incoming, outgoing}` (§5).
pub const GET_CALL_REQUESTS: &str = "getCallRequests";
/// S→C `incomingCallNew {callId, from, fromName}` (§5).
pub const INCOMING_CALL_NEW: &str = "incomingCallNew";
/// S→C `callAcceptedNew {callId, roomId, room}` (§5).
pub const CALL_ACCEPTED_NEW: &str = "callAcceptedNew";
/// S→C `callRejectedNew {callId, reason}` (§5).
pub const CALL_REJECTED_NEW: &str = "callRejectedNew";
/// S→C `callCancelled {callId, reason?}` (§5).
pub const CALL_CANCELLED: &str = "callCancelled";
/// S→C `callTimeout {callId}` (§5).
pub const CALL_TIMEOUT: &str = "callTimeout";

// §6 Rooms --------------------------------------------------------------------------

/// C→S `createRoom {roomType, roomName?, targetUserId?, invitedUserIds?}` → `{success, room}` (§6).
pub const CREATE_ROOM: &str = "createRoom";
/// C→S `joinRoom {roomId}` → `{success, room}` (§6).
pub const JOIN_ROOM: &str = "joinRoom";
/// C→S `leaveRoom {roomId}` → `{success, message}` (§6).
pub const LEAVE_ROOM: &str = "leaveRoom";
/// C→S `acceptCall {roomId}` → `{success, room}` (§6).
pub const ACCEPT_CALL: &str = "acceptCall";
/// C→S `rejectCall {roomId}` → `{success, message}` (§6).
pub const REJECT_CALL: &str = "rejectCall";
/// C→S `endCall {roomId}` → `{success, message}` (§6).
pub const END_CALL: &str = "endCall";
/// C→S `getRooms {}` → `{success, rooms}` (§6).
pub const GET_ROOMS: &str = "getRooms";
/// C→S `sendMessage {roomId, content, replyTo?}` → `{success, message}` (§6).
pub const SEND_MESSAGE: &str = "sendMessage";
/// C→S `reactToMessage {roomId, messageId, emoji}` → `{success, message}` (§6).
pub const REACT_TO_MESSAGE: &str = "reactToMessage";
/// C→S `mediaStateChanged {roomId, isMuted, isVideoEnabled}` → `{success}` (§6).
pub const MEDIA_STATE_CHANGED: &str = "mediaStateChanged";
/// S→C `incomingCall {roomId, roomType, fromUserId, fromUserName}` (§6).
pub const INCOMING_CALL: &str = "incomingCall";
/// S→C `invitationExpired {roomId}` (§6).
pub const INVITATION_EXPIRED: &str = "invitationExpired";
/// S→C `callAccepted {userId, roomId}` (§6).
pub const CALL_ACCEPTED: &str = "callAccepted";
/// S→C `callRejected {userId, userName, roomId}` (§6).
pub const CALL_REJECTED: &str = "callRejected";
/// S→C `callEnded {roomId, endedBy, reason?}` (§6). Not to be confused
/// with [`CALL_ENDED`] (`call:ended`, §7).
pub const ROOM_CALL_ENDED: &str = "callEnded";
/// S→C `userJoined {userId, userName, socketId}` (§6).
pub const USER_JOINED: &str = "userJoined";
/// S→C `userLeft {userId, roomId}` (§6).
pub const USER_LEFT: &str = "userLeft";
/// S→C `newMessage` with a room `ChatMessage` (§6).
pub const NEW_MESSAGE: &str = "newMessage";
/// S→C `messageReactionUpdated {messageId, reactions}` (§6). Not to be
/// confused with [`MESSAGE_REACTION_UPDATED`] (§9).
pub const ROOM_MESSAGE_REACTION_UPDATED: &str = "messageReactionUpdated";
/// S→C `participantMediaStateUpdated {userId, name, isMuted, isVideoEnabled}` (§6).
pub const PARTICIPANT_MEDIA_STATE_UPDATED: &str = "participantMediaStateUpdated";
/// S→C `roomListUpdated {rooms}` (§6).
pub const ROOM_LIST_UPDATED: &str = "roomListUpdated";
/// S→C `roomHostless {roomId, message}` (§6).
pub const ROOM_HOSTLESS: &str = "roomHostless";
/// S→C `hostReconnected {roomId, userId}` (§6).
pub const HOST_RECONNECTED: &str = "hostReconnected";

// §7 Conversation calls (call:*) --------------------------------------------------

/// C→S `call:initiate {conversationId, type, settings?}` → `{success, callId, call, iceServers}` (§7).
pub const CALL_INITIATE: &str = "call:initiate";
/// C→S `call:join {callId, settings?}` → `{success, call, iceServers}` (§7).
pub const CALL_JOIN: &str = "call:join";
/// C→S `call:leave {callId}` → `{success}` (§7).
pub const CALL_LEAVE: &str = "call:leave";
/// Both ways: C→S `call:signal {callId, signal}` → `{success}`, and the
/// relayed S→C `call:signal {callId, signal}` with `from` set (§7).
pub const CALL_SIGNAL: &str = "call:signal";
/// C→S `call:toggle-audio {callId, enabled}` → `{success}` (§7).
pub const CALL_TOGGLE_AUDIO: &str = "call:toggle-audio";
/// C→S `call:toggle-video {callId, enabled}` → `{success}` (§7).
pub const CALL_TOGGLE_VIDEO: &str = "call:toggle-video";
/// C→S `call:force-leave {conversationId}` → `{success, endedCallIds}` (§7).
pub const CALL_FORCE_LEAVE: &str = "call:force-leave";
/// C→S `call:connected {callId}` → `{success}` (§7).
pub const CALL_CONNECTED: &str = "call:connected";
/// C→S `call:quality {callId, stats}` → `{success}` (§7).
pub const CALL_QUALITY: &str = "call:quality";
/// S→C `call:initiated {callId, conversationId, type, mode, initiator, participants}` (§7).
pub const CALL_INITIATED: &str = "call:initiated";
/// S→C `call:participant-joined {callId, participant, mode, iceServers}` (§7).
pub const CALL_PARTICIPANT_JOINED: &str = "call:participant-joined";
/// S→C `call:participant-left {callId, participantId, userId?, anonymousId?}` (§7).
pub const CALL_PARTICIPANT_LEFT: &str = "call:participant-left";
/// S→C `call:participant-reconnecting {callId, userId}` (§7).
pub const CALL_PARTICIPANT_RECONNECTING: &str = "call:participant-reconnecting";
/// S→C `call:media-toggled {callId, participantId, userId, mediaType, enabled}` (§7).
pub const CALL_MEDIA_TOGGLED: &str = "call:media-toggled";
/// S→C `call:mode-changed {callId, mode, roomId}` (§7).
pub const CALL_MODE_CHANGED: &str = "call:mode-changed";
/// S→C `call:ended {callId, duration, endedBy, reason?}` (§7). Not to be
/// confused with [`ROOM_CALL_ENDED`] (`callEnded`, §6).
pub const CALL_ENDED: &str = "call:ended";
/// S→C `call:error {code, message, callId?}` (§3, §7).
pub const CALL_ERROR: &str = "call:error";

// §8 SFU signalling -----------------------------------------------------------------

/// C→S `getRouterRtpCapabilities {roomId}` → `{success, rtpCapabilities}` (§8).
pub const GET_ROUTER_RTP_CAPABILITIES: &str = "getRouterRtpCapabilities";
/// C→S `createTransport {roomId, direction, rtpCapabilities?}` → `{success, params}` (§8).
pub const CREATE_TRANSPORT: &str = "createTransport";
/// C→S `connectTransport {transportId, dtlsParameters}` → `{success}` (§8).
pub const CONNECT_TRANSPORT: &str = "connectTransport";
/// C→S `produce {roomId, transportId, kind, rtpParameters, appData?}` → `{success, producerId}` (§8).
pub const PRODUCE: &str = "produce";
/// C→S `consume {roomId, producerId, rtpCapabilities}` → `{success, params}` (§8).
pub const CONSUME: &str = "consume";
/// C→S `resumeConsumer {roomId, consumerId}` → `{success}` (§8).
pub const RESUME_CONSUMER: &str = "resumeConsumer";
/// C→S `pauseProducer {roomId, producerId}` → `{success}` (§8).
pub const PAUSE_PRODUCER: &str = "pauseProducer";
/// C→S `resumeProducer {roomId, producerId}` → `{success}` (§8).
pub const RESUME_PRODUCER: &str = "resumeProducer";
/// C→S `closeProducer {roomId, producerId}` → `{success}` (§8).
pub const CLOSE_PRODUCER: &str = "closeProducer";
/// C→S `setConsumerPreferredLayers {roomId, consumerId, spatialLayer, temporalLayer?}` → `{success}` (§8).
pub const SET_CONSUMER_PREFERRED_LAYERS: &str = "setConsumerPreferredLayers";
/// S→C `newProducer {producerId, userId, kind, appData}` (§8).
pub const NEW_PRODUCER: &str = "newProducer";
/// S→C `producerClosed {producerId, userId}` (§8).
pub const PRODUCER_CLOSED: &str = "producerClosed";
/// S→C `producerPaused {producerId, userId}` (§8).
pub const PRODUCER_PAUSED: &str = "producerPaused";
/// S→C `producerResumed {producerId, userId}` (§8).
pub const PRODUCER_RESUMED: &str = "producerResumed";
/// S→C `consumerClosed {consumerId, producerId}` (§8).
pub const CONSUMER_CLOSED: &str = "consumerClosed";
/// S→C `consumerLayersChanged {consumerId, spatialLayer}` (§8).
pub const CONSUMER_LAYERS_CHANGED: &str = "consumerLayersChanged";
/// S→C `activeSpeaker {roomId, userId}` (§8).
pub const ACTIVE_SPEAKER: &str = "activeSpeaker";

// §9 Chat -----------------------------------------------------------------------------

/// C→S `conversation:create {type, memberIds, name?}` → `{success, conversation}` (§9).
pub const CONVERSATION_CREATE: &str = "conversation:create";
/// C→S `conversation:list {}` → `{success, conversations}` (§9).
pub const CONVERSATION_LIST: &str = "conversation:list";
/// C→S `conversation:add-members {conversationId, memberIds}` → `{success, conversation}` (§9).
pub const CONVERSATION_ADD_MEMBERS: &str = "conversation:add-members";
/// C→S `conversation:remove-member {conversationId, userId}` → `{success, conversation}` (§9).
pub const CONVERSATION_REMOVE_MEMBER: &str = "conversation:remove-member";
/// C→S `conversation:leave {conversationId}` → `{success}` (§9).
pub const CONVERSATION_LEAVE: &str = "conversation:leave";
/// C→S `conversation:rename {conversationId, name}` → `{success}` (§9).
pub const CONVERSATION_RENAME: &str = "conversation:rename";
/// C→S `conversation:delete {conversationId}` → `{success, deletedAt}` (§9).
pub const CONVERSATION_DELETE: &str = "conversation:delete";
/// C→S `message:send {conversationId, content, replyTo?, clientMessageId?}` → `{success, message}` (§9).
pub const MESSAGE_SEND: &str = "message:send";
/// C→S `message:edit {conversationId, messageId, content}` → `{success, message}` (§9).
pub const MESSAGE_EDIT: &str = "message:edit";
/// C→S `message:delete {conversationId, messageId}` → `{success, message}` (§9).
pub const MESSAGE_DELETE: &str = "message:delete";
/// C→S `message:history {conversationId, before?, after?, limit?}` → `{success, messages, hasMore}` (§9).
pub const MESSAGE_HISTORY: &str = "message:history";
/// C→S `message:react {conversationId, messageId, emoji}` → `{success, reactions}` (§9).
pub const MESSAGE_REACT: &str = "message:react";
/// C→S `message:read {conversationId}` → `{success}` (§9).
pub const MESSAGE_READ: &str = "message:read";
/// C→S `unread:get {}` → `{success, counts}` (§9).
pub const UNREAD_GET: &str = "unread:get";
/// C→S `typing:start {conversationId}` → `{success}` (§9).
pub const TYPING_START: &str = "typing:start";
/// C→S `typing:stop {conversationId}` → `{success}` (§9).
pub const TYPING_STOP: &str = "typing:stop";
/// S→C `message:new {message}` (§9).
pub const MESSAGE_NEW: &str = "message:new";
/// S→C `message:edited {message}` (§9).
pub const MESSAGE_EDITED: &str = "message:edited";
/// S→C `message:deleted {conversationId, messageId}` (§9).
pub const MESSAGE_DELETED: &str = "message:deleted";
/// S→C `message:reaction-updated {conversationId, messageId, reactions}` (§9).
/// Not to be confused with [`ROOM_MESSAGE_REACTION_UPDATED`] (§6).
pub const MESSAGE_REACTION_UPDATED: &str = "message:reaction-updated";
/// S→C `conversation:updated {conversation}` (§9).
pub const CONVERSATION_UPDATED: &str = "conversation:updated";
/// S→C `conversation:read {conversationId, userId, readAt}` (§9).
pub const CONVERSATION_READ: &str = "conversation:read";
/// S→C `unread:updated {conversationId, count}` (§9).
pub const UNREAD_UPDATED: &str = "unread:updated";
/// S→C `typing {conversationId, userId, isTyping}` (§9).
pub const TYPING: &str = "typing";

/// Every event a client may send, i.e. every event the server listens to.
pub const CLIENT_EVENTS: &[&str] = &[
    // §2
    AUTH_REFRESH,
    USERS_GET,
    GET_CALL_HISTORY,
    // §4
    PRESENCE_STATUS,
    PRESENCE_GET,
    GET_ONLINE_USERS,
    GET_FRIENDS,
    // §5
    CALL_USER,
    ACCEPT_CALL_NEW,
    REJECT_CALL_NEW,
    CANCEL_CALL,
    GET_CALL_REQUESTS,
    // §6
    CREATE_ROOM,
    JOIN_ROOM,
    LEAVE_ROOM,
    ACCEPT_CALL,
    REJECT_CALL,
    END_CALL,
    GET_ROOMS,
    SEND_MESSAGE,
    REACT_TO_MESSAGE,
    MEDIA_STATE_CHANGED,
    // §7
    CALL_INITIATE,
    CALL_JOIN,
    CALL_LEAVE,
    CALL_SIGNAL,
    CALL_TOGGLE_AUDIO,
    CALL_TOGGLE_VIDEO,
    CALL_FORCE_LEAVE,
    CALL_CONNECTED,
    CALL_QUALITY,
    // §8
    GET_ROUTER_RTP_CAPABILITIES,
    CREATE_TRANSPORT,
    CONNECT_TRANSPORT,
    PRODUCE,
    CONSUME,
    RESUME_CONSUMER,
    PAUSE_PRODUCER,
    RESUME_PRODUCER,
    CLOSE_PRODUCER,
    SET_CONSUMER_PREFERRED_LAYERS,
    // §9
    CONVERSATION_CREATE,
    CONVERSATION_LIST,
    CONVERSATION_ADD_MEMBERS,
    CONVERSATION_REMOVE_MEMBER,
    CONVERSATION_LEAVE,
    CONVERSATION_RENAME,
    CONVERSATION_DELETE,
    MESSAGE_SEND,
    MESSAGE_EDIT,
    MESSAGE_DELETE,
    MESSAGE_HISTORY,
    MESSAGE_REACT,
    MESSAGE_READ,
    UNREAD_GET,
    TYPING_START,
    TYPING_STOP,
];

/// Every event the server may emit to a client.
pub const SERVER_EVENTS: &[&str] = &[
    // §2
    SESSION,
    AUTH_EXPIRED,
    SESSION_REPLACED,
    // §4
    ONLINE_USERS_UPDATED,
    FRIEND_ONLINE,
    FRIEND_OFFLINE,
    FRIEND_IN_CALL,
    FRIEND_OUT_OF_CALL,
    FRIEND_STATUS,
    // §5
    INCOMING_CALL_NEW,
    CALL_ACCEPTED_NEW,
    CALL_REJECTED_NEW,
    CALL_CANCELLED,
    CALL_TIMEOUT,
    // §6
    INCOMING_CALL,
    INVITATION_EXPIRED,
    CALL_ACCEPTED,
    CALL_REJECTED,
    ROOM_CALL_ENDED,
    USER_JOINED,
    USER_LEFT,
    NEW_MESSAGE,
    ROOM_MESSAGE_REACTION_UPDATED,
    PARTICIPANT_MEDIA_STATE_UPDATED,
    ROOM_LIST_UPDATED,
    ROOM_HOSTLESS,
    HOST_RECONNECTED,
    // §7
    CALL_INITIATED,
    CALL_PARTICIPANT_JOINED,
    CALL_PARTICIPANT_LEFT,
    CALL_PARTICIPANT_RECONNECTING,
    CALL_SIGNAL,
    CALL_MEDIA_TOGGLED,
    CALL_MODE_CHANGED,
    CALL_ENDED,
    CALL_ERROR,
    // §8
    NEW_PRODUCER,
    PRODUCER_CLOSED,
    PRODUCER_PAUSED,
    PRODUCER_RESUMED,
    CONSUMER_CLOSED,
    CONSUMER_LAYERS_CHANGED,
    ACTIVE_SPEAKER,
    // §9
    MESSAGE_NEW,
    MESSAGE_EDITED,
    MESSAGE_DELETED,
    MESSAGE_REACTION_UPDATED,
    CONVERSATION_UPDATED,
    CONVERSATION_READ,
    UNREAD_UPDATED,
    TYPING,
];

/// Whether `name` is an event a client may send (see [`CLIENT_EVENTS`]).
pub fn is_client_event(name: &str) -> bool {
    CLIENT_EVENTS.contains(&name)
}

/// Whether `name` is an event the server emits (see [`SERVER_EVENTS`]).
pub fn is_server_event(name: &str) -> bool {
    SERVER_EVENTS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_per_direction() {
        let client: HashSet<_> = CLIENT_EVENTS.iter().collect();
        assert_eq!(client.len(), CLIENT_EVENTS.len());
        let server: HashSet<_> = SERVER_EVENTS.iter().collect();
        assert_eq!(server.len(), SERVER_EVENTS.len());
        // Only call:signal travels both ways.
        let both: Vec<_> = client.intersection(&server).collect();
        assert_eq!(both, vec![&&CALL_SIGNAL]);
    }

    #[test]
    fn spot_check_wire_names() {
        assert_eq!(CALL_USER, "callUser");
        assert_eq!(MESSAGE_SEND, "message:send");
        assert_eq!(CALL_TOGGLE_AUDIO, "call:toggle-audio");
        assert_eq!(FRIEND_OUT_OF_CALL, "friend_out_of_call");
        assert_eq!(ROOM_CALL_ENDED, "callEnded");
        assert_eq!(CALL_ENDED, "call:ended");
        assert!(is_client_event("typing:start"));
        assert!(!is_client_event("typing"));
        assert!(is_server_event("typing"));
        assert!(!is_server_event("nope"));
    }
}
