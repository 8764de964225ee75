//! Services: they apply domain rules to the store and the database and tell clients what
//! changed. Handlers (Socket.IO and HTTP) only parse, call a service, and answer.

pub mod friends;
pub mod online_list;
pub mod presence;
pub mod sessions;
pub mod users;
