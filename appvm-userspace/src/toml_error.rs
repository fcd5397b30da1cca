//! TOML errors as one line with the line number (toml's own span several).

/// `line N (key): message` for an error in `text`; the key is named when
/// the error's line assigns one, since serde's messages ("invalid value:
/// integer `70000`, expected u16") do not.
pub fn one_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !msg.contains(*k));
            match key {
                Some(key) => format!("line {line} ({key}): {msg}"),
                None => format!("line {line}: {msg}"),
            }
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Port {
        port: u16,
    }

    #[test]
    fn names_the_key_of_a_bad_value() {
        let text = "\nport = 70000\n";
        let e = toml::from_str::<Port>(text).expect_err("out of range");
        assert_eq!(
            one_line(text, &e),
            "line 2 (port): invalid value: integer `70000`, expected u16"
        );
    }
}
