//! Rendering errors from other crates for people: each cause once, joined by `: `.

use std::error::Error;

/// `outer: cause: root cause`, from `Display` only. `Debug` output of SDK errors can be long and
/// is never used, so nothing a type chose to keep out of `Display` reaches a message.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors repeat their source's text in their own; print it once.
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_causes_once() {
        let err = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&err), "outer: disk on fire");
    }
}
