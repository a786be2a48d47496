use crate::session::Session;

#[hot_runtime::hot]
pub fn on_join(session: &mut Session, who: &str) -> String {
    session.members.push(who.to_string());
    format!("welcome, {who}! ({} in the room)", session.members.len())
}
