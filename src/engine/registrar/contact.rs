//! Contact and Expires header parsing for REGISTER (RFC 3261 10.2 and 20.10): the list of
//! contacts, `*`, and delta-seconds.

use crate::proto::sip::Request;

/// delta-seconds; larger than 2^32-1 is taken as 2^32-1 (RFC 3261 20.19 / 10.2.1).
pub(super) fn parse_delta(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX)),
    )
}

pub(super) enum ContactSpec {
    Star,
    Uri { uri: String, expires: Option<u64> },
}

/// Every Contact of the request, in order; None if one is malformed.
pub(super) fn contact_list(req: &Request) -> Option<Vec<ContactSpec>> {
    let mut out = Vec::new();
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Contact") || n == "m")
    {
        for part in split_outside(v, ',')? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if part == "*" {
                out.push(ContactSpec::Star);
                continue;
            }
            let (uri, params) = contact_parts(part)?;
            let expires = params.split(';').find_map(|p| {
                let (n, v) = p.split_once('=')?;
                n.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| parse_delta(v.trim().trim_matches('"')))
                    .flatten()
            });
            out.push(ContactSpec::Uri {
                uri: uri.to_string(),
                expires,
            });
        }
    }
    Some(out)
}

/// (URI, header params) of one contact-param.
fn contact_parts(s: &str) -> Option<(&str, &str)> {
    if let Some(lt) = find_outside_quotes(s, '<') {
        let rest = &s[lt + 1..];
        let gt = rest.find('>')?;
        let uri = rest[..gt].trim();
        (!uri.is_empty() && uri.contains(':')).then_some((uri, &rest[gt + 1..]))
    } else {
        let (uri, params) = s.split_once(';').unwrap_or((s, ""));
        let uri = uri.trim();
        (uri.contains(':') && !uri.contains([' ', '"'])).then_some((uri, params))
    }
}

fn find_outside_quotes(s: &str, want: char) -> Option<usize> {
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
        } else if c == want {
            return Some(i);
        }
    }
    None
}

/// Splits at `sep` outside quotes and angle brackets; None if a quote is left open.
fn split_outside(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let (mut start, mut in_q, mut esc, mut angle) = (0, false, false, false);
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
            continue;
        }
        match c {
            '"' => in_q = true,
            '<' => angle = true,
            '>' => angle = false,
            c if c == sep && !angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_q {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}
