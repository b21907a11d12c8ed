//! HTTP Digest authentication as SIP uses it (RFC 7616, RFC 2617, RFC 3261 22.4): parsing
//! `Authorization` / `Proxy-Authorization` credentials, writing `WWW-Authenticate` /
//! `Proxy-Authenticate` challenges, HA1 and response computation, verification.
//!
//! Pure functions, no state; nonce issuing and replay tracking live in
//! `engine::registrar`. Only `qop=auth` (and the legacy no-qop form of RFC 2069/2617) is
//! supported: `auth-int` and the `-sess` algorithms are not offered, so a client using
//! them fails verification.
//!
//! ```text
//! let p = parse_credentials(req.header("Authorization")?)?;   // never panics
//! let alg = Algorithm::from_param(p.algorithm())?;            // None param -> MD5
//! verify(alg, &stored_ha1, "REGISTER", p.uri()?, &p)          // constant-time compare
//! ```

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest hash algorithm we offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `algorithm=` value (case-insensitive); an absent parameter means MD5 (RFC 7616 3.3).
    /// `-sess` variants and anything else are not supported.
    pub fn from_param(v: Option<&str>) -> Option<Algorithm> {
        match v {
            None => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }

    /// Length of an HA1 / response in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

/// The parameters of one `Digest` credentials header, names lower-cased, values unquoted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub params: Vec<(String, String)>,
}

impl Credentials {
    /// Value of parameter `name` (case-insensitive); the first if repeated.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn username(&self) -> Option<&str> {
        self.get("username")
    }
    pub fn realm(&self) -> Option<&str> {
        self.get("realm")
    }
    pub fn nonce(&self) -> Option<&str> {
        self.get("nonce")
    }
    pub fn uri(&self) -> Option<&str> {
        self.get("uri")
    }
    pub fn response(&self) -> Option<&str> {
        self.get("response")
    }
    pub fn algorithm(&self) -> Option<&str> {
        self.get("algorithm")
    }
    pub fn cnonce(&self) -> Option<&str> {
        self.get("cnonce")
    }
    pub fn opaque(&self) -> Option<&str> {
        self.get("opaque")
    }
    pub fn qop(&self) -> Option<&str> {
        self.get("qop")
    }
    pub fn nc(&self) -> Option<&str> {
        self.get("nc")
    }

    /// `nc` as a number: exactly 8 hex digits (RFC 7616 3.4).
    pub fn nc_value(&self) -> Option<u32> {
        let nc = self.nc()?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }
}

/// Most parameters one credentials header may carry; more is garbage, not a client.
const MAX_PARAMS: usize = 32;

/// Parses `Digest k=v, k="v", ...` (scheme case-insensitive, parameter names
/// case-insensitive, quoted strings with backslash escapes, LWS around `=` and `,`).
/// Returns None for another scheme or malformed input. Never panics.
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let v = value.trim_start();
    let (scheme, rest) = match v.find([' ', '\t']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let params = parse_params(rest)?;
    if params.is_empty() || params.len() > MAX_PARAMS {
        return None;
    }
    Some(Credentials { params })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// `auth-param *( "," auth-param )`; empty elements between commas are tolerated
/// (RFC 7230 7 list rule).
fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices>| {
        while it
            .peek()
            .is_some_and(|(_, c)| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            it.next();
        }
    };
    loop {
        skip_ws(&mut chars);
        match chars.peek() {
            None => break,
            Some((_, ',')) => {
                chars.next();
                continue;
            }
            _ => {}
        }
        // name
        let mut name = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if !is_token_char(c) {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        if name.is_empty() {
            return None;
        }
        skip_ws(&mut chars);
        if chars.next().map(|(_, c)| c) != Some('=') {
            return None;
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '"') {
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if !is_token_char(c) && !matches!(c, '/' | ':' | '@' | '=') {
                    break;
                }
                value.push(c);
                chars.next();
            }
            if value.is_empty() {
                return None;
            }
        }
        out.push((name, value));
        skip_ws(&mut chars);
        match chars.next() {
            None => break,
            Some((_, ',')) => {}
            Some(_) => return None,
        }
    }
    Some(out)
}

/// What one challenge header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub realm: &'a str,
    pub nonce: &'a str,
    pub opaque: Option<&'a str>,
    pub algorithm: Algorithm,
    /// The previous nonce was too old but the credentials were right (RFC 7616 3.3).
    pub stale: bool,
}

/// The value of a `WWW-Authenticate` / `Proxy-Authenticate` header, `qop="auth"`.
pub fn challenge(c: &Challenge) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", nonce=\"{}\"",
        quote(c.realm),
        quote(c.nonce)
    );
    if let Some(o) = c.opaque {
        s.push_str(&format!(", opaque=\"{}\"", quote(o)));
    }
    s.push_str(&format!(
        ", algorithm={}, qop=\"auth\"",
        c.algorithm.as_str()
    ));
    if c.stale {
        s.push_str(", stale=true");
    }
    s
}

/// Escapes `"` and `\` inside a quoted-string; drops line breaks (no header injection).
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// HA1 = H(username ":" realm ":" password), lower-case hex.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// `qop=auth` inputs of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// 8 hex digits as sent.
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// The expected `response`: with qop=auth H(HA1:nonce:nc:cnonce:auth:HA2), without qop
/// (RFC 2069) H(HA1:nonce:HA2); HA2 = H(method:digest-uri). `ha1` is compared as given,
/// so pass it lower-case hex.
pub fn response(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    digest_uri: &str,
    nonce: &str,
    qop: Option<QopAuth>,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{digest_uri}").as_bytes());
    let kd = match qop {
        Some(q) => format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", q.nc, q.cnonce),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    alg.hash_hex(kd.as_bytes())
}

/// Whether `params` carries the right `response` for `method` and `digest_uri` under the
/// stored `ha1`. qop must be `auth` with nc and cnonce, or absent (legacy). Checks only
/// the hash: nonce freshness, nc replay, realm and uri matching are the caller's.
pub fn verify(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    digest_uri: &str,
    params: &Credentials,
) -> bool {
    let (Some(nonce), Some(got)) = (params.nonce(), params.response()) else {
        return false;
    };
    let qop = match params.qop() {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => match (params.nc(), params.cnonce()) {
            (Some(nc), Some(cnonce)) if params.nc_value().is_some() => Some(QopAuth { nc, cnonce }),
            _ => return false,
        },
        Some(_) => return false,
    };
    let ha1 = ha1.to_ascii_lowercase();
    let want = response(alg, &ha1, method, digest_uri, nonce, qop);
    ct_eq(want.as_bytes(), got.to_ascii_lowercase().as_bytes())
}

/// Constant-time equality for equal lengths (the length itself is not secret: it is
/// fixed by the algorithm).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 section 3.9.1.
    const RFC7616_AUTH_MD5: &str = r#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=MD5,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="8ca523f5e9506fed4657c9700eebdbec",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    const RFC7616_AUTH_SHA256: &str = r#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_md5_and_sha256_vectors() {
        for (text, alg) in [
            (RFC7616_AUTH_MD5, Algorithm::Md5),
            (RFC7616_AUTH_SHA256, Algorithm::Sha256),
        ] {
            let p = parse_credentials(text).unwrap();
            assert_eq!(Algorithm::from_param(p.algorithm()), Some(alg));
            assert_eq!(p.username(), Some("Mufasa"));
            assert_eq!(p.nc_value(), Some(1));
            let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            assert!(verify(alg, &h, "GET", "/dir/index.html", &p), "{alg:?}");
            assert!(!verify(alg, &h, "POST", "/dir/index.html", &p));
            let wrong = ha1(alg, "Mufasa", "http-auth@example.org", "circle of life");
            assert!(!verify(alg, &wrong, "GET", "/dir/index.html", &p));
        }
    }

    #[test]
    fn rfc2617_vector() {
        let text = r#"Digest username="Mufasa", realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
            nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
            opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let p = parse_credentials(text).unwrap();
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(h, "939e7578ed9e3c518a452acee763bce9");
        assert!(verify(Algorithm::Md5, &h, "GET", "/dir/index.html", &p));
        // Upper-case stored HA1 and response are accepted.
        assert!(verify(
            Algorithm::Md5,
            &h.to_ascii_uppercase(),
            "GET",
            "/dir/index.html",
            &p
        ));
    }

    #[test]
    fn legacy_no_qop() {
        let h = ha1(Algorithm::Md5, "1001", "ccswitch", "pw");
        let r = response(Algorithm::Md5, &h, "REGISTER", "sip:x", "abc", None);
        let p = parse_credentials(&format!(
            "Digest username=\"1001\",realm=\"ccswitch\",nonce=\"abc\",uri=\"sip:x\",response=\"{r}\""
        ))
        .unwrap();
        assert!(verify(Algorithm::Md5, &h, "REGISTER", "sip:x", &p));
        // qop=auth without nc/cnonce is refused; so is auth-int.
        let p2 = parse_credentials(&format!(
            "Digest username=\"1001\",nonce=\"abc\",uri=\"sip:x\",response=\"{r}\",qop=auth"
        ))
        .unwrap();
        assert!(!verify(Algorithm::Md5, &h, "REGISTER", "sip:x", &p2));
        let p3 = parse_credentials(&format!(
            "Digest nonce=\"abc\",response=\"{r}\",qop=auth-int,nc=00000001,cnonce=\"x\""
        ))
        .unwrap();
        assert!(!verify(Algorithm::Md5, &h, "REGISTER", "sip:x", &p3));
    }

    #[test]
    fn parsing_is_quote_aware_and_case_insensitive() {
        let p = parse_credentials(
            "digest USERNAME = \"a,b\\\"c\" , Realm=r,, NONCE=\"n=1, x\",uri=\"sip:1@h;transport=udp\"",
        )
        .unwrap();
        assert_eq!(p.username(), Some("a,b\"c"));
        assert_eq!(p.realm(), Some("r"));
        assert_eq!(p.nonce(), Some("n=1, x"));
        assert_eq!(p.uri(), Some("sip:1@h;transport=udp"));
        assert_eq!(p.get("Username"), Some("a,b\"c"));
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        for bad in [
            "",
            "Digest",
            "Basic dXNlcjpwYXNz",
            "Digest username=\"open",
            "Digest =x",
            "Digest a",
            "Digest a=",
            "Digest a=b c=d",
            "Digest a=\"x\\",
            "Digestusername=\"x\"",
        ] {
            assert_eq!(parse_credentials(bad), None, "{bad:?}");
        }
        let many = format!(
            "Digest {}",
            (0..40)
                .map(|i| format!("p{i}=1"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse_credentials(&many), None);
        // Multi-byte characters anywhere.
        let _ = parse_credentials("Digest é=\"é\", ü=ü");
        let p = parse_credentials("Digest nc=0000000g").unwrap();
        assert_eq!(p.nc_value(), None);
    }

    #[test]
    fn challenge_text() {
        let c = challenge(&Challenge {
            realm: "ccswitch",
            nonce: "abc",
            opaque: Some("op"),
            algorithm: Algorithm::Sha256,
            stale: true,
        });
        assert_eq!(
            c,
            "Digest realm=\"ccswitch\", nonce=\"abc\", opaque=\"op\", algorithm=SHA-256, qop=\"auth\", stale=true"
        );
        let back = parse_credentials(&c).unwrap();
        assert_eq!(back.get("stale"), Some("true"));
        let c = challenge(&Challenge {
            realm: "a\"b\r\n",
            nonce: "n",
            opaque: None,
            algorithm: Algorithm::Md5,
            stale: false,
        });
        assert_eq!(
            c,
            "Digest realm=\"a\\\"b\", nonce=\"n\", algorithm=MD5, qop=\"auth\""
        );
    }

    #[test]
    fn algorithms() {
        assert_eq!(
            Algorithm::from_param(Some("sha-256")),
            Some(Algorithm::Sha256)
        );
        assert_eq!(Algorithm::from_param(Some("MD5-sess")), None);
        assert_eq!(Algorithm::from_param(None), Some(Algorithm::Md5));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
