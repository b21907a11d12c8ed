//! Small lexical helpers of our own: the RFC 3261 checks the rsipstack codec does not make
//! (it is deliberately lenient) and the pieces it gets wrong on valid input.

/// RFC 3261 `token` characters.
pub(super) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Compact header names (RFC 3261 7.3.3 and later RFCs) to their full form.
pub(super) fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'x' => "Session-Expires",
        b'u' => "Allow-Events",
        b'a' => "Accept-Contact",
        b'j' => "Reject-Contact",
        b'd' => "Request-Disposition",
        b'y' => "Identity",
        b'n' => "Identity-Info",
        _ => name,
    }
}

/// Case-insensitive, compact-aware header name comparison.
pub(super) fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Splits `s` at `sep` where it is outside double quotes and angle brackets.
/// Returns None if a quoted string is left open.
pub(super) fn split_outside(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle = 0usize;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            c if c == sep && angle == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

/// Removes linear white space next to the given separators (outside quotes), so the
/// rsipstack typed-header parsers, which split on the bare separators, see `a;b=c`
/// where RFC 3261 allows `a ; b = c` (SEMI, EQUAL, SLASH... all allow SWS).
pub(super) fn squeeze(s: &str, seps: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_quotes = false;
    let mut escaped = false;
    let mut pending_ws = false;
    for c in s.trim().chars() {
        if in_quotes {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        if c == ' ' || c == '\t' {
            pending_ws = true;
            continue;
        }
        let prev_sep = out.chars().last().is_some_and(|p| seps.contains(&p));
        if pending_ws && !prev_sep && !seps.contains(&c) {
            out.push(' ');
        }
        pending_ws = false;
        if c == '"' {
            in_quotes = true;
        }
        out.push(c);
    }
    out
}

/// One `;name[=value]` list: names must be tokens, no empty element (RFC 4475 badinv01).
pub(super) fn params_ok(list: &str) -> bool {
    if list.trim().is_empty() {
        return true;
    }
    let Some(parts) = split_outside(list, ';') else {
        return false;
    };
    parts.iter().all(|p| {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        is_token(name)
            && match value {
                None => true,
                Some(v) if v.starts_with('"') => v.len() >= 2 && v.ends_with('"'),
                Some(v) => {
                    !v.is_empty() && v.chars().all(|c| is_token_char(c) || "[]:".contains(c))
                }
            }
    })
}

/// The user part of a sip/sips/tel URI, found by our own split: user and password may
/// contain `;`, `?` and `/` (RFC 4475 intmeth, semiuri), which rsipstack's URI parser
/// takes as the start of params or headers before it looks for `@`. In a SIP URI no
/// `@` may appear unescaped outside the userinfo, so the first one ends it.
pub(super) fn uri_user(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or("");
        return (!number.is_empty()).then(|| number.to_string());
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| user.to_string())
}

/// Value of `name` in a `;`-separated header-parameter list (case-insensitive name).
pub(super) fn param<'a>(list: &'a str, name: &str) -> Option<Option<&'a str>> {
    let parts = split_outside(list, ';')?;
    parts.into_iter().find_map(|p| {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_removes_lws_around_separators_only() {
        assert_eq!(
            squeeze(
                "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9",
                &['/', ';', '=']
            ),
            "SIP/2.0/TCP spindle.example.com;branch=z9"
        );
        assert_eq!(
            squeeze("\"a ; b\" <sip:x> ; q = 1", &[';', '=']),
            "\"a ; b\" <sip:x>;q=1"
        );
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        assert_eq!(
            split_outside("\"a,b\" <sip:x;a=1,2>, <sip:y>", ',').unwrap(),
            vec!["\"a,b\" <sip:x;a=1,2>", " <sip:y>"]
        );
        assert!(split_outside("\"open", ',').is_none());
    }

    #[test]
    fn user_parts() {
        assert_eq!(
            uri_user("sip:user;par=u%40example.net@example.com").as_deref(),
            Some("user;par=u%40example.net")
        );
        assert_eq!(
            uri_user("sip:alice:pw@example.com").as_deref(),
            Some("alice")
        );
        assert_eq!(uri_user("sip:example.com"), None);
        assert_eq!(
            uri_user("tel:+15551234567;phone-context=x").as_deref(),
            Some("+15551234567")
        );
    }

    #[test]
    fn param_lists() {
        assert!(params_ok("tag=1;lr;q=0.5"));
        assert!(!params_ok(";;"));
        assert!(!params_ok("tag="));
        assert_eq!(param("tag=1;rport", "RPORT"), Some(None));
        assert_eq!(param("tag=1;rport", "tag"), Some(Some("1")));
    }
}
