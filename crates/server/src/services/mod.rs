//! Services: they apply domain rules to the store and the database and tell clients what
//! changed. Handlers (Socket.IO and HTTP) only parse, call a service, and answer.

pub mod call_state;
pub mod calls;
pub mod conversation_calls;
pub mod conversations;
pub mod friends;
pub mod messages;
pub mod notifications;
pub mod online_list;
pub mod presence;
pub mod rate_limit;
pub mod rooms;
pub mod sessions;
pub mod typing;
pub mod users;
