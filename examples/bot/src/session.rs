//! The bot's connection to its (pretend) chat service: logging in is slow and its token must
//! survive code changes, which is the reason to hot-patch handlers instead of restarting, and
//! to keep it (`kept!` in main.rs) across the restarts an edit cannot avoid.

use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub user: String,
    pub token: u64,
    /// Who is in the room.
    pub members: Vec<String>,
    /// Messages seen since login.
    pub seen: u64,
}

impl Session {
    pub fn login(user: &str) -> Session {
        println!("[{}] logging in as {user} ...", std::process::id());
        // A real bot waits for an OAuth dance, a websocket handshake, a rate limiter.
        std::thread::sleep(Duration::from_millis(1500));
        let token = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000);
        println!(
            "[{}] logged in as {user} (session token {token})",
            std::process::id()
        );
        Session {
            user: user.to_string(),
            token,
            members: Vec::new(),
            seen: 0,
        }
    }
}
