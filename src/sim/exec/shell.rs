//! `sh -c` for simulated containers: words with '…', "…" and \ quoting, `&&`, `||` and
//! `;` lists, `>`/`>>`/`>&2` redirections, and the exit status of the last command. Enough for
//! the commands runbooks run in pods; anything else is a syntax error like dash reports.

/// One simple command: its words and where its stdout goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Simple {
    pub words: Vec<String>,
    /// `> file` (false) or `>> file` (true).
    pub redirect: Option<(String, bool)>,
    /// `>&2`: stdout goes to stderr.
    pub to_stderr: bool,
}

/// How a command joins the one before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Joint {
    /// `;` (or the first command): always runs.
    Then,
    /// `&&`: runs if the status so far is 0.
    And,
    /// `||`: runs if the status so far is not 0.
    Or,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    And,
    Or,
    Semi,
    Great,
    DGreat,
    ToStderr,
}

fn tokenize(script: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = script.chars().peekable();
    let mut word: Option<String> = None;
    let flush = |word: &mut Option<String>, tokens: &mut Vec<Token>| {
        if let Some(w) = word.take() {
            tokens.push(Token::Word(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => flush(&mut word, &mut tokens),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("Syntax error: Unterminated quoted string".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            w.extend(chars.next());
                        }
                        Some(c) => w.push(c),
                        None => return Err("Syntax error: Unterminated quoted string".into()),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                flush(&mut word, &mut tokens);
                tokens.push(Token::And);
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                flush(&mut word, &mut tokens);
                tokens.push(Token::Or);
            }
            '|' | '&' | '(' | ')' | '<' | '`' => return Err(format!("Syntax error: \"{c}\" is not supported here")),
            ';' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Semi);
            }
            '>' => {
                flush(&mut word, &mut tokens);
                if chars.peek() == Some(&'&') {
                    chars.next();
                    match chars.next() {
                        Some('2') => tokens.push(Token::ToStderr),
                        Some('1') => {}
                        _ => return Err("Syntax error: Bad fd number".into()),
                    }
                } else if chars.peek() == Some(&'>') {
                    chars.next();
                    tokens.push(Token::DGreat);
                } else {
                    tokens.push(Token::Great);
                }
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    flush(&mut word, &mut tokens);
    Ok(tokens)
}

/// Parses a script into its commands, each with how it joins the previous one.
pub fn parse(script: &str) -> Result<Vec<(Joint, Simple)>, String> {
    let mut list = Vec::new();
    let mut joint = Joint::Then;
    let mut current = Simple { words: Vec::new(), redirect: None, to_stderr: false };
    let mut tokens = tokenize(script)?.into_iter().peekable();
    let unexpected = |what: &str| format!("Syntax error: \"{what}\" unexpected");
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(w) => current.words.push(w),
            Token::ToStderr => current.to_stderr = true,
            Token::Great | Token::DGreat => {
                let append = token == Token::DGreat;
                match tokens.next() {
                    Some(Token::Word(file)) => current.redirect = Some((file, append)),
                    _ => return Err("Syntax error: redirection unexpected".into()),
                }
            }
            Token::And | Token::Or | Token::Semi => {
                let text = match token {
                    Token::And => "&&",
                    Token::Or => "||",
                    _ => ";",
                };
                if current.words.is_empty() {
                    return Err(unexpected(text));
                }
                list.push((
                    joint,
                    std::mem::replace(&mut current, Simple { words: Vec::new(), redirect: None, to_stderr: false }),
                ));
                joint = match token {
                    Token::And => Joint::And,
                    Token::Or => Joint::Or,
                    _ => Joint::Then,
                };
            }
        }
    }
    if current.words.is_empty() {
        if joint != Joint::Then {
            return Err("Syntax error: end of file unexpected".into());
        }
    } else {
        list.push((joint, current));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(Joint, Simple)]) -> Vec<(Joint, Vec<&str>)> {
        list.iter().map(|(j, s)| (*j, s.words.iter().map(String::as_str).collect())).collect()
    }

    #[test]
    fn lists_and_quotes_parse_like_sh() {
        let list = parse(r#"mv /a "/b c" && echo 'it''s' || echo no\ way; ls"#).unwrap();
        assert_eq!(
            words(&list),
            [
                (Joint::Then, vec!["mv", "/a", "/b c"]),
                (Joint::And, vec!["echo", "its"]),
                (Joint::Or, vec!["echo", "no way"]),
                (Joint::Then, vec!["ls"]),
            ]
        );
        assert!(parse("echo oops >&2").unwrap()[0].1.to_stderr);
        let redirected = parse("echo hi >> /tmp/x").unwrap();
        assert_eq!(redirected[0].1.redirect, Some(("/tmp/x".to_string(), true)));
    }

    #[test]
    fn broken_scripts_are_syntax_errors() {
        assert!(parse("echo 'open").unwrap_err().contains("Unterminated"));
        assert!(parse("&& ls").unwrap_err().contains("unexpected"));
        assert!(parse("ls &&").unwrap_err().contains("end of file"));
        assert!(parse("ls | wc").is_err());
    }
}
