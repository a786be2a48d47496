use crate::session::Session;

#[hot_runtime::hot]
pub fn on_message(session: &mut Session, from: &str, text: &str) -> Option<String> {
    session.seen += 1;
    let text = text.trim();
    if text == "!ping" {
        return Some(format!("pong, {from}"));
    }
    if text == "!whoami" {
        return Some(format!("I am {} (token {})", session.user, session.token));
    }
    if let Some(rest) = text.strip_prefix("!echo ") {
        return Some(rest.to_string());
    }
    None
}
