//! One handler per event kind, one file each; every handler is `#[hot]`, so editing a file
//! changes the bot's next reply while the session stays logged in.

pub mod join;
pub mod message;
pub mod tick;
