//! Redacting what commands run in pods print (and what their command lines say) before
//! it is shown or kept in a run record: the values of Secrets the pod can see, PEM
//! private keys, and strings shaped like tokens or passwords.

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Secret values shorter than this are not searched for: "1" or "true" would blank out
/// half the output and protect nothing.
const MIN_SECRET_LEN: usize = 4;

/// A command line for display: words quoted when needed, secrets in it redacted.
pub fn redact_command(command: &[String]) -> String {
    let words: Vec<String> = command
        .iter()
        .map(|w| {
            let shown = redact_text(w, &[]);
            if shown.is_empty() || shown.contains(|c: char| c.is_whitespace() || "'\"$&|;<>".contains(c)) {
                format!("'{}'", shown.replace('\'', r"'\''"))
            } else {
                shown
            }
        })
        .collect();
    words.join(" ")
}

/// `text` with every known secret value, private key and token-like string redacted.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut by_length: Vec<&String> = secrets.iter().filter(|s| s.trim().len() >= MIN_SECRET_LEN).collect();
    // Longest first, so a value containing another is replaced whole.
    by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in by_length {
        out = out.replace(secret.as_str(), REDACTED);
        let trimmed = secret.trim();
        if trimmed.len() != secret.len() && trimmed.len() >= MIN_SECRET_LEN {
            out = out.replace(trimmed, REDACTED);
        }
    }
    let out = redact_private_keys(&out);
    redact_tokens(&out)
}

/// `-----BEGIN … PRIVATE KEY-----` … `-----END … PRIVATE KEY-----`, also when cut off.
fn redact_private_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let header_end = rest[start..]
            .find("-----\n")
            .map(|e| start + e)
            .or_else(|| rest[start + 11..].find("-----").map(|e| start + 11 + e));
        let is_private = header_end.is_some_and(|e| rest[start..e].contains("PRIVATE KEY"));
        if !is_private {
            out.push_str(&rest[..start + 11]);
            rest = &rest[start + 11..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        let after = &rest[start + 11..];
        rest = match after.find("-----END ") {
            Some(end) => {
                let tail = &after[end + 9..];
                tail.find("-----").map_or("", |close| &tail[close + 5..])
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Words that look like credentials: JWTs, AWS access keys, GitHub/Slack tokens,
/// `Bearer X`, and `password=X`-style assignments.
fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut bearer = false;
    for piece in text.split_inclusive(|c: char| c.is_whitespace()) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        let shown = if bearer && !word.is_empty() { REDACTED.to_string() } else { redact_word(word) };
        bearer = word.eq_ignore_ascii_case("bearer") || (bearer && word.is_empty());
        out.push_str(&shown);
        out.push_str(space);
    }
    out
}

fn redact_word(word: &str) -> String {
    if let Some((key, value)) = word.split_once(['=', ':']) {
        let key_lower = key.trim_start_matches('-').to_ascii_lowercase();
        let sensitive = ["password", "passwd", "secret", "token", "apikey", "api-key", "api_key", "access-key"];
        if !value.is_empty() && sensitive.iter().any(|s| key_lower.ends_with(s)) {
            let sep = &word[key.len()..key.len() + 1];
            return format!("{key}{sep}{REDACTED}");
        }
    }
    let core = word.trim_matches(|c: char| "\"'`,;()[]{}".contains(c));
    if looks_like_token(core) { word.replace(core, REDACTED) } else { word.to_string() }
}

fn looks_like_token(word: &str) -> bool {
    let base64url = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let jwt = word.starts_with("eyJ") && {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3 && base64url(parts[0]) && base64url(parts[1]) && parts[1].len() >= 8
    };
    let aws_key = word.len() == 20
        && ["AKIA", "ASIA"].iter().any(|p| word.starts_with(p))
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let prefixed = ["ghp_", "gho_", "ghs_", "github_pat_", "xoxb-", "xoxp-", "glpat-", "sk-"]
        .iter()
        .any(|p| word.strip_prefix(p).is_some_and(|rest| rest.len() >= 16 && base64url(rest)));
    jwt || aws_key || prefixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_keys_and_tokens_are_redacted() {
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIO\n-----END EC PRIVATE KEY-----\n";
        let text = format!(
            "user ok\npass: hunter22\n{key}cert -----BEGIN CERTIFICATE-----\nAuth: Bearer abc.def\nAKIAABCDEFGHIJKLMNOP eyJhbGciOi.eyJzdWIiOiIxMjM0.sig"
        );
        let shown = redact_text(&text, &["hunter22".into(), "ok".into()]);
        assert!(!shown.contains("hunter22") && !shown.contains("MHcCAQEEIO"), "{shown}");
        assert!(shown.contains("user ok"), "short values are left: {shown}");
        assert!(shown.contains("BEGIN CERTIFICATE"), "certificates are public: {shown}");
        assert!(!shown.contains("abc.def") && !shown.contains("AKIAABCDEFGHIJKLMNOP") && !shown.contains("eyJzdWIi"));
    }

    #[test]
    fn command_lines_are_quoted_and_redacted() {
        let command: Vec<String> =
            ["sh", "-c", "mv a b && echo done", "--password=s3cr3t"].iter().map(|s| s.to_string()).collect();
        assert_eq!(redact_command(&command), "sh -c 'mv a b && echo done' --password=[REDACTED]");
    }
}
