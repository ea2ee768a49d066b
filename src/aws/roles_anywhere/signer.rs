//! The Roles Anywhere request signature: SigV4's canonical request and string to sign, with an
//! X.509 key instead of a secret key. Pure: a function of the request, the time and the key.

use sha2::{Digest, Sha256};

use super::keys::SigningKey;

/// What is signed: a request to `POST /sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Host` header value: host, and `:port` when not the scheme's default.
    pub host: String,
    pub path: String,
    /// Query parameters, unencoded.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub region: String,
    /// Standard base64 of the leaf certificate's DER.
    pub x509: String,
    /// Intermediates, each standard base64 DER, joined by `,`; `None` when there are none.
    pub x509_chain: Option<String>,
    /// The leaf certificate's serial number in decimal.
    pub serial: String,
}

/// Headers to send: everything signed, plus `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
    /// Path and canonical query, as sent.
    pub path_and_query: String,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4 URI encoding: everything but unreserved characters is `%XX`, upper-case.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers that are signed, lower-case names, sorted.
fn signed_headers(req: &Request, amz_date: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), req.host.clone()),
        ("x-amz-date".to_string(), amz_date.to_string()),
        ("x-amz-x509".to_string(), req.x509.clone()),
    ];
    if let Some(chain) = &req.x509_chain {
        h.push(("x-amz-x509-chain".to_string(), chain.clone()));
    }
    h.sort();
    h
}

pub fn canonical_request(req: &Request, amz_date: &str) -> String {
    let headers = signed_headers(req, amz_date);
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    format!(
        "POST\n{}\n{}\n{}\n{}\n{}",
        req.path,
        canonical_query(&req.query),
        canonical_headers,
        names.join(";"),
        hex(&Sha256::digest(&req.body))
    )
}

pub fn scope(amz_date: &str, region: &str) -> String {
    format!(
        "{}/{region}/rolesanywhere/aws4_request",
        &amz_date[..8.min(amz_date.len())]
    )
}

pub fn string_to_sign(
    algorithm: &str,
    amz_date: &str,
    region: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{algorithm}\n{amz_date}\n{}\n{}",
        scope(amz_date, region),
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `YYYYMMDDTHHMMSSZ` for a time.
pub fn amz_date(t: jiff::Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Signs the request at `amz_date` with `key`.
pub fn sign(req: &Request, amz_date: &str, key: &SigningKey) -> Signed {
    let canonical = canonical_request(req, amz_date);
    let algorithm = key.algorithm();
    let to_sign = string_to_sign(algorithm, amz_date, &req.region, &canonical);
    let signature = hex(&key.sign(to_sign.as_bytes()));
    let mut headers = signed_headers(req, amz_date);
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let authorization = format!(
        "{algorithm} Credential={}/{}, SignedHeaders={}, Signature={signature}",
        req.serial,
        scope(amz_date, &req.region),
        names.join(";")
    );
    headers.push(("authorization".to_string(), authorization));
    let query = canonical_query(&req.query);
    let path_and_query = if query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{query}", req.path)
    };
    Signed {
        headers,
        path_and_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chain: Option<&str>) -> Request {
        Request {
            host: "rolesanywhere.us-east-1.amazonaws.com".into(),
            path: "/sessions".into(),
            query: vec![
                (
                    "trustAnchorArn".into(),
                    "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta".into(),
                ),
                (
                    "profileArn".into(),
                    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p".into(),
                ),
                ("roleArn".into(), "arn:aws:iam::123456789012:role/r".into()),
            ],
            body: br#"{"durationSeconds":3600}"#.to_vec(),
            region: "us-east-1".into(),
            x509: "TUlJQ0VSVA==".into(),
            x509_chain: chain.map(String::from),
            serial: "1234".into(),
        }
    }

    // Golden values written from the protocol description, not produced by this code; the
    // hashes were computed with `sha256sum`.
    const CANONICAL: &str = "POST
/sessions
profileArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Aprofile%2Fp&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Atrust-anchor%2Fta
content-type:application/json
host:rolesanywhere.us-east-1.amazonaws.com
x-amz-date:20261121T120000Z
x-amz-x509:TUlJQ0VSVA==
x-amz-x509-chain:SU5URVI=

content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain
BODY_SHA256";

    #[test]
    fn canonical_request_golden() {
        let body_sha = "1a15f67f6619aa540b13e9a4c37d149fb2c9bdea25d82b73a3878826694dfe27";
        let want = CANONICAL.replace("BODY_SHA256", body_sha);
        assert_eq!(
            canonical_request(&request(Some("SU5URVI=")), "20261121T120000Z"),
            want
        );
    }

    #[test]
    fn no_chain_header_without_intermediates() {
        let c = canonical_request(&request(None), "20261121T120000Z");
        assert!(!c.contains("x-amz-x509-chain"));
        assert!(c.contains("\ncontent-type;host;x-amz-date;x-amz-x509\n"));
    }

    #[test]
    fn string_to_sign_golden() {
        let canonical = canonical_request(&request(Some("SU5URVI=")), "20261121T120000Z");
        assert_eq!(
            string_to_sign(
                "AWS4-X509-RSA-SHA256",
                "20261121T120000Z",
                "us-east-1",
                &canonical
            ),
            "AWS4-X509-RSA-SHA256\n20261121T120000Z\n20261121/us-east-1/rolesanywhere/aws4_request\nc3ca09eb0a9bc180d8bf4de17dd2c7c471a793fcfb2e754c590c17225a10832c"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a-Z_0.~/: +"), "a-Z_0.~%2F%3A%20%2B");
        assert_eq!(
            amz_date(jiff::Timestamp::from_second(1_795_000_000).unwrap()),
            "20261118T110640Z"
        );
    }
}
