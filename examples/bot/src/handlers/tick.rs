use crate::session::Session;

#[hot_runtime::hot]
pub fn on_tick(session: &mut Session, n: u64) -> Option<String> {
    // Every fifth tick, a status line.
    if n % 5 != 0 {
        return None;
    }
    Some(format!(
        "tick {n}: all quiet, {} seen, {} in the room, token {}",
        session.seen,
        session.members.len(),
        session.token
    ))
}
