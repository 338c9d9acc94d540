//! End-to-end tests of the query API: a real server on 127.0.0.1:0 over an embedded store (and
//! over the ScyllaDB backend on a Cassandra node the test starts), called with reqwest.

use super::*;
use crate::state::embedded::EmbeddedStore;
use crate::state::WriteBatch;
use fluxo_processors::events::{
    AverageMethod, BelowAverageEvent, CrossingKind, DailyBalance, Decision, Direction, PriceAlert,
    RiskDecision, RiskReason,
};
use fluxo_processors::{views, StateWriter};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const AS_OF: i64 = 1_717_000_000_000; // 2024-05-29T16:26:40Z
const AS_OF_TEXT: &str = "2024-05-29T16:26:40.000Z";
const T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/testdata");

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn day(date: &str) -> i32 {
    params::business_date("date", date).unwrap()
}

fn balance(account: &str, date: &str, credits: &str, debits: &str, count: i64) -> DailyBalance {
    let d = day(date);
    DailyBalance {
        account_id: account.to_string(),
        business_date: d,
        total_credits: dec(credits),
        total_debits: dec(debits),
        net: dec(credits) - dec(debits),
        entry_count: count,
        last_entry_at: i64::from(d) * 86_400_000 + 3_600_000,
        updated_at: i64::from(d) * 86_400_000 + 3_601_000,
    }
}

fn alert(symbol: &str, id: &str, to_time: i64) -> PriceAlert {
    PriceAlert {
        alert_id: id.to_string(),
        symbol: symbol.to_string(),
        direction: Direction::Rise,
        from_price: dec("10.00000000"),
        from_time: to_time - 60_000,
        from_event_id: format!("{id}-from"),
        to_price: dec("10.60000000"),
        to_time,
        to_event_id: format!("{id}-to"),
        change_pct: dec("6.0000"),
        threshold_pct: dec("5.0000"),
        window_start: to_time - 300_000,
        window_end: to_time,
    }
}

fn decision() -> RiskDecision {
    RiskDecision {
        transaction_id: "tx-1".to_string(),
        score: 700,
        decision: Decision::Review,
        reasons: vec![RiskReason {
            rule_id: "velocity_10m".to_string(),
            contribution: 700,
            text: "12 payments in 10 minutes".to_string(),
        }],
        degraded: false,
        event_time: T0,
        decided_at: T0 + 7,
        latency_ms: 7,
    }
}

fn below_average() -> BelowAverageEvent {
    BelowAverageEvent {
        event_id: "b1".to_string(),
        symbol: "PETR4".to_string(),
        kind: CrossingKind::Below,
        price: dec("35.10000000"),
        average: dec("36.00000000"),
        deviation_pct: dec("-2.5000"),
        samples: 30,
        method: AverageMethod::Sma,
        event_time: T0 + 500,
        quote_event_id: "q-9".to_string(),
    }
}

fn put_json<T: serde::Serialize>(b: &mut WriteBatch, table: &str, key: &[u8], value: &T) {
    b.put(table, key, &serde_json::to_vec(value).unwrap());
}

/// The fixture views.
fn fixture(store: &dyn crate::state::StateStore) {
    let mut b = WriteBatch::new();
    for row in [
        balance("ACC-1", "2024-01-01", "100.00", "30.50", 3),
        balance("ACC-1", "2024-01-03", "0.00", "200.00", 1),
        balance("ACC-1", "2024-01-04", "50.25", "0.00", 1),
        balance("ACC-2", "2023-12-31", "10.00", "0.00", 1),
        // A longer account id sharing the prefix "ACC-1" must never leak into ACC-1.
        balance("ACC-10", "2024-01-02", "999.99", "0.00", 9),
    ] {
        let key = views::daily_balance_key(&row.account_id, row.business_date);
        put_json(&mut b, views::DAILY_BALANCES, &key, &row);
    }
    put_json(&mut b, views::RISK_DECISIONS, b"tx-1", &decision());
    for a in [
        alert("PETR4", "a1", T0),
        alert("PETR4", "a2", T0 + 1_000),
        alert("PETR4", "a3", T0 + 2_000),
        alert("PETR", "x1", T0 + 1_500),
        alert("VALE3", "v1", T0 + 500),
    ] {
        let key = views::alert_key(&a.symbol, a.to_time, &a.alert_id);
        put_json(&mut b, views::PRICE_ALERTS, &key, &a);
    }
    let e = below_average();
    let key = views::alert_key(&e.symbol, e.event_time, &e.event_id);
    put_json(&mut b, views::BELOW_AVERAGE_EVENTS, &key, &e);
    store.commit(b).unwrap();
}

struct Server {
    base: String,
    client: reqwest::Client,
    freshness: Arc<Freshness>,
    _dir: tempfile::TempDir,
}

async fn start_with(auth: Auth, fill: impl FnOnce(&EmbeddedStore)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("views.redb")).unwrap();
    fill(&store);
    start_on(auth, Arc::new(store), dir).await
}

/// A server over `store` (any backend).
async fn start_on(
    auth: Auth,
    store: Arc<dyn crate::state::StateStore>,
    dir: tempfile::TempDir,
) -> Server {
    let freshness = Arc::new(Freshness::new(AS_OF));
    let app = router(ApiState {
        store,
        auth: Arc::new(auth),
        freshness: freshness.clone(),
        read_timeout: std::time::Duration::from_secs(5),
        reads: ReadGate::new(128),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        freshness,
        _dir: dir,
    }
}

async fn start() -> Server {
    start_with(
        Auth::hs256(SECRET.as_bytes()).unwrap(),
        |s: &EmbeddedStore| fixture(s),
    )
    .await
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs(claims: Value) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn good() -> String {
    hs(json!({"sub": "reader", "exp": now_secs() + 600}))
}

impl Server {
    async fn get_with(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_with(path, Some(&good())).await
    }

    /// GET expecting 400 and returning the error message.
    async fn bad(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        body["error"].as_str().unwrap().to_string()
    }

    /// The raw 401 answer to `token`.
    async fn assert_unauthorized(&self, path: &str, token: Option<&str>, why: &str) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(
            resp.headers().get("www-authenticate").unwrap(),
            "Bearer",
            "{why}"
        );
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/json"
        );
        // Always the same body: no hint of what was wrong.
        assert_eq!(
            resp.text().await.unwrap(),
            r#"{"error":"unauthorized"}"#,
            "{why}"
        );
    }
}

const DAY_PATH: &str = "/v1/accounts/ACC-1/daily-balances/2024-01-01";

#[tokio::test]
async fn hs256_auth_none_bad_expired_wrong_algorithm_good() {
    let s = start().await;
    let bearer = |t: &str| format!("Bearer {t}");
    s.assert_unauthorized(DAY_PATH, None, "no header").await;
    s.assert_unauthorized(DAY_PATH, Some("Bearer"), "empty bearer")
        .await;
    s.assert_unauthorized(DAY_PATH, Some("Bearer not-a-jwt"), "garbage")
        .await;
    s.assert_unauthorized(DAY_PATH, Some(&format!("Basic {}", good())), "wrong scheme")
        .await;
    let other = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
        json!({"exp": now_secs() + 600}),
    );
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&other)), "bad signature")
        .await;
    // A valid token whose payload was swapped keeps a signature that no longer matches.
    let valid = good();
    let forged_payload = hs(json!({"sub": "admin", "exp": now_secs() + 600}));
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        forged_payload.split('.').nth(1).unwrap(),
        parts[2]
    );
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&forged)), "tampered payload")
        .await;
    let expired = hs(json!({"exp": now_secs() - 60}));
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&expired)), "expired")
        .await;
    let no_exp = hs(json!({"sub": "reader"}));
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&no_exp)), "no exp")
        .await;
    let hs384 = token(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"exp": now_secs() + 600}),
    );
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&hs384)), "HS384 to an HS256 server")
        .await;
    let (status, body) = s.get_with(DAY_PATH, Some(&good())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Inside the leeway an exp a second ago still passes; far past it does not (above).
    let just = hs(json!({"exp": now_secs() - 1}));
    assert_eq!(s.get_with(DAY_PATH, Some(&just)).await.0, StatusCode::OK);
    // A development token of the same secret works.
    let dev = Auth::hs256(SECRET.as_bytes())
        .unwrap()
        .dev_token(Duration::from_secs(60))
        .unwrap();
    assert_eq!(s.get_with(DAY_PATH, Some(&dev)).await.0, StatusCode::OK);
    // Every /v1 route is protected; openapi.json is not.
    for path in [
        "/v1/accounts/ACC-1/daily-balances?from=2024-01-01&to=2024-01-02",
        "/v1/risk-decisions/tx-1",
        "/v1/assets/PETR4/alerts",
        "/v1/assets/PETR4/below-average-events",
    ] {
        s.assert_unauthorized(path, None, path).await;
    }
    assert_eq!(s.get_with("/openapi.json", None).await.0, StatusCode::OK);
}

/// The attacks of issue 16 not covered above: `alg: none`, a token not valid yet (`nbf` an hour
/// ahead), wrong audience or issuer, and an oversized token; all get the same bare 401.
#[tokio::test]
async fn jwt_attacks_none_nbf_audience_issuer_oversized() {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let bearer = |t: &str| format!("Bearer {t}");
    let auth = Auth::hs256(SECRET.as_bytes())
        .unwrap()
        .with_audience(&["fluxo-api".to_string()])
        .with_issuer(&["https://idp.example".to_string()]);
    let s = start_with(auth, |s: &EmbeddedStore| fixture(s)).await;
    let valid = json!({"aud": "fluxo-api", "iss": "https://idp.example", "exp": now_secs() + 600});
    assert_eq!(
        s.get_with(DAY_PATH, Some(&hs(valid.clone()))).await.0,
        StatusCode::OK
    );

    // alg none, with and without a trailing dot, and alg "None"/"NONE".
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&valid)
        );
        s.assert_unauthorized(DAY_PATH, Some(&bearer(&format!("{unsigned}."))), alg)
            .await;
        s.assert_unauthorized(DAY_PATH, Some(&bearer(&unsigned)), alg)
            .await;
    }
    // Not valid yet: nbf an hour ahead (the leeway is seconds).
    let mut ahead = valid.clone();
    ahead["nbf"] = json!(now_secs() + 3600);
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&hs(ahead))), "nbf an hour ahead")
        .await;
    // nbf inside the leeway is accepted (clock skew between issuer and server).
    let mut skew = valid.clone();
    skew["nbf"] = json!(now_secs() + 2);
    assert_eq!(
        s.get_with(DAY_PATH, Some(&hs(skew))).await.0,
        StatusCode::OK
    );
    // Wrong or missing audience / issuer.
    for (field, value) in [
        ("aud", json!("another-api")),
        ("aud", Value::Null),
        ("iss", json!("https://evil.example")),
        ("iss", Value::Null),
    ] {
        let mut claims = valid.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value.clone();
        }
        let why = format!("{field} = {value}");
        s.assert_unauthorized(DAY_PATH, Some(&bearer(&hs(claims))), &why)
            .await;
    }
    // Oversized: a validly signed token padded past MAX_TOKEN_BYTES is refused unread.
    let mut big = valid.clone();
    big["pad"] = json!("x".repeat(crate::api::auth::MAX_TOKEN_BYTES));
    let big = hs(big);
    assert!(big.len() > crate::api::auth::MAX_TOKEN_BYTES);
    s.assert_unauthorized(DAY_PATH, Some(&bearer(&big)), "oversized token")
        .await;
    assert!(!Auth::hs256(SECRET.as_bytes()).unwrap().verify(&big));
}

#[tokio::test]
async fn rs256_and_es256_public_keys() {
    let read = |f: &str| std::fs::read(format!("{TESTDATA}/{f}")).unwrap();
    let rs_auth =
        Auth::from_public_key_file(&std::path::Path::new(TESTDATA).join("rs256-public.pem"))
            .unwrap();
    let rs = start_with(rs_auth, |s: &EmbeddedStore| fixture(s)).await;
    let rs_key = EncodingKey::from_rsa_pem(&read("rs256-private.pem")).unwrap();
    let es_key = EncodingKey::from_ec_pem(&read("es256-private.pem")).unwrap();
    let claims = json!({"sub": "reader", "exp": now_secs() + 600});
    let rs_token = token(Algorithm::RS256, &rs_key, claims.clone());
    let es_token = token(Algorithm::ES256, &es_key, claims.clone());
    assert_eq!(
        rs.get_with(DAY_PATH, Some(&rs_token)).await.0,
        StatusCode::OK
    );
    let bearer = |t: &str| format!("Bearer {t}");
    rs.assert_unauthorized(
        DAY_PATH,
        Some(&bearer(&es_token)),
        "ES256 to an RS256 server",
    )
    .await;
    // Algorithm confusion: HS256 "signed" with the server's public key as the secret.
    let confused = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(&read("rs256-public.pem")),
        claims.clone(),
    );
    rs.assert_unauthorized(
        DAY_PATH,
        Some(&bearer(&confused)),
        "HS256 with the public key",
    )
    .await;
    let rs_expired = token(Algorithm::RS256, &rs_key, json!({"exp": now_secs() - 60}));
    rs.assert_unauthorized(DAY_PATH, Some(&bearer(&rs_expired)), "RS256 expired")
        .await;

    let es_auth = Auth::from_public_key_pem(&read("es256-public.pem")).unwrap();
    let es = start_with(es_auth, |s: &EmbeddedStore| fixture(s)).await;
    assert_eq!(
        es.get_with(DAY_PATH, Some(&es_token)).await.0,
        StatusCode::OK
    );
    es.assert_unauthorized(
        DAY_PATH,
        Some(&bearer(&rs_token)),
        "RS256 to an ES256 server",
    )
    .await;
    // Signed by another P-256 key.
    let other = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&read("es256-other-private.pem")).unwrap(),
        claims,
    );
    es.assert_unauthorized(DAY_PATH, Some(&bearer(&other)), "ES256 from another key")
        .await;
}

#[tokio::test]
async fn single_day() {
    let s = start().await;
    let (status, body) = s.get(DAY_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "as_of": AS_OF_TEXT,
            "data": {
                "account_id": "ACC-1",
                "date": "2024-01-01",
                "total_credits": "100.00",
                "total_debits": "30.50",
                "net": "69.50",
                "entry_count": 3,
                "last_entry_at": "2024-01-01T01:00:00.000Z",
                "updated_at": "2024-01-01T01:00:01.000Z"
            }
        })
    );
    // as_of follows the shared freshness and never goes back.
    s.freshness.set(AS_OF + 1_500);
    s.freshness.set(AS_OF);
    let (_, body) = s.get(DAY_PATH).await;
    assert_eq!(body["as_of"], "2024-05-29T16:26:41.500Z");
}

#[tokio::test]
async fn range_with_running_balance() {
    let s = start().await;
    let (status, body) = s
        .get("/v1/accounts/ACC-1/daily-balances?from=2023-12-31&to=2024-01-04")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let zero_day = |date: &str, running: &str| {
        json!({"date": date, "total_credits": "0.00", "total_debits": "0.00", "net": "0.00",
               "entry_count": 0, "last_entry_at": null, "updated_at": null,
               "running_balance": running})
    };
    assert_eq!(
        body,
        json!({
            "as_of": AS_OF_TEXT,
            "data": {
                "account_id": "ACC-1",
                "from": "2023-12-31",
                "to": "2024-01-04",
                "total_credits": "150.25",
                "total_debits": "230.50",
                "net": "-80.25",
                "entry_count": 5,
                "closing_balance": "-80.25",
                "days": [
                    zero_day("2023-12-31", "0.00"),
                    {"date": "2024-01-01", "total_credits": "100.00", "total_debits": "30.50",
                     "net": "69.50", "entry_count": 3,
                     "last_entry_at": "2024-01-01T01:00:00.000Z",
                     "updated_at": "2024-01-01T01:00:01.000Z", "running_balance": "69.50"},
                    zero_day("2024-01-02", "69.50"),
                    {"date": "2024-01-03", "total_credits": "0.00", "total_debits": "200.00",
                     "net": "-200.00", "entry_count": 1,
                     "last_entry_at": "2024-01-03T01:00:00.000Z",
                     "updated_at": "2024-01-03T01:00:01.000Z", "running_balance": "-130.50"},
                    {"date": "2024-01-04", "total_credits": "50.25", "total_debits": "0.00",
                     "net": "50.25", "entry_count": 1,
                     "last_entry_at": "2024-01-04T01:00:00.000Z",
                     "updated_at": "2024-01-04T01:00:01.000Z", "running_balance": "-80.25"}
                ]
            }
        })
    );
    // A sub-range starts its running balance at zero.
    let (_, body) = s
        .get("/v1/accounts/ACC-1/daily-balances?from=2024-01-03&to=2024-01-03")
        .await;
    let days = body["data"]["days"].as_array().unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0]["running_balance"], "-200.00");
    assert_eq!(body["data"]["closing_balance"], "-200.00");
    // A known account with no entries in the range: every day as zeros.
    let (status, body) = s
        .get("/v1/accounts/ACC-2/daily-balances?from=2024-01-01&to=2024-01-02")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["days"],
        json!([
            zero_day("2024-01-01", "0.00"),
            zero_day("2024-01-02", "0.00")
        ])
    );
    assert_eq!(body["data"]["entry_count"], 0);
    assert_eq!(body["data"]["closing_balance"], "0.00");
    // The longest range (366 days) is served.
    let (status, body) = s
        .get("/v1/accounts/ACC-1/daily-balances?from=2024-01-01&to=2024-12-31")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["days"].as_array().unwrap().len(), 366);
    assert_eq!(body["data"]["days"][365]["date"], "2024-12-31");
    assert_eq!(body["data"]["closing_balance"], "-80.25");
}

#[tokio::test]
async fn bad_input_is_400_with_a_clear_message() {
    let s = start().await;
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances/2024-13-01").await,
        "date 2024-13-01 is not a calendar date"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances/01-01-2024").await,
        "date must be a date written YYYY-MM-DD"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC%201/daily-balances/2024-01-01")
            .await,
        "account id may only contain letters, digits, '.', '_' and '-'"
    );
    assert_eq!(
        s.bad(&format!(
            "/v1/accounts/{}/daily-balances/2024-01-01",
            "A".repeat(65)
        ))
        .await,
        "account id is too long (65 bytes, at most 64)"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances?from=2024-01-05&to=2024-01-01")
            .await,
        "'from' (2024-01-05) must not be after 'to' (2024-01-01)"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances?from=2024-01-01&to=2025-01-01")
            .await,
        "the range from 2024-01-01 to 2025-01-01 spans 367 days; at most 366 are allowed"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances?from=2024-01-01")
            .await,
        "query parameters 'from' and 'to' are required (YYYY-MM-DD)"
    );
    assert_eq!(
        s.bad("/v1/accounts/ACC-1/daily-balances?from=2024-01-01&to=tomorrow")
            .await,
        "'to' must be a date written YYYY-MM-DD"
    );
    let msg = s
        .bad("/v1/accounts/ACC-1/daily-balances?from=2024-01-01&to=2024-01-02&form=x")
        .await;
    assert_eq!(
        msg,
        "bad query string: form: unknown field `form`, expected `from` or `to`"
    );
    assert_eq!(
        s.bad("/v1/risk-decisions/tx$1").await,
        "transaction id may only contain letters, digits, '.', '_' and '-'"
    );
    assert_eq!(
        s.bad("/v1/assets/PETR4/alerts?since=yesterday").await,
        "'since' must be an RFC 3339 time (2024-05-01T12:00:00Z) or epoch milliseconds"
    );
    assert_eq!(
        s.bad("/v1/assets/PETR4/alerts?limit=0").await,
        "'limit' must be a whole number from 1 to 1000"
    );
    assert_eq!(
        s.bad("/v1/assets/PETR%2F4/below-average-events").await,
        "symbol may only contain letters, digits, '.', '_' and '-'"
    );
}

#[tokio::test]
async fn unknown_account_and_day_are_404() {
    let s = start().await;
    let (status, body) = s.get("/v1/accounts/ACC-9/daily-balances/2024-01-01").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "unknown account ACC-9", "as_of": AS_OF_TEXT})
    );
    let (status, body) = s
        .get("/v1/accounts/ACC-9/daily-balances?from=2024-01-01&to=2024-01-31")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "unknown account ACC-9", "as_of": AS_OF_TEXT})
    );
    // "ACC-" is only a prefix of real accounts: still unknown.
    let (status, _) = s.get("/v1/accounts/ACC-/daily-balances/2024-01-01").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s.get("/v1/accounts/ACC-1/daily-balances/2024-01-02").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "account ACC-1 has no entries on 2024-01-02", "as_of": AS_OF_TEXT})
    );
}

#[tokio::test]
async fn unknown_route_404_and_wrong_method_405() {
    let s = start().await;
    for path in [
        "/v1/nope",
        "/nope",
        "/v1/accounts/ACC-1",
        "/v1/accounts/ACC-1/daily-balances/2024-01-01/x",
        "/",
    ] {
        for t in [None, Some(good())] {
            let (status, body) = s.get_with(path, t.as_deref()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body, json!({"error": "no such route"}), "{path}");
        }
    }
    let resp = s
        .client
        .post(format!("{}/v1/risk-decisions/tx-1", s.base))
        .bearer_auth(good())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get("allow").unwrap(), "GET,HEAD");
    // Without a token too: the method is checked before authentication.
    let anonymous = s
        .client
        .delete(format!("{}/v1/risk-decisions/tx-1", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "method not allowed: this route only answers GET"})
    );
}

#[tokio::test]
async fn risk_decision_found_and_not_found() {
    let s = start().await;
    let (status, body) = s.get("/v1/risk-decisions/tx-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"as_of": AS_OF_TEXT, "data": serde_json::to_value(decision()).unwrap()})
    );
    assert_eq!(body["data"]["decision"], "REVIEW");
    let (status, body) = s.get("/v1/risk-decisions/tx-404").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "no risk decision for transaction tx-404", "as_of": AS_OF_TEXT})
    );
}

fn ids(body: &Value, field: &str) -> Vec<String> {
    body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn alerts_since_filter_and_paging() {
    let s = start().await;
    let (status, body) = s.get("/v1/assets/PETR4/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "alert_id"), ["a1", "a2", "a3"]);
    assert_eq!(body["data"]["since"], Value::Null);
    assert_eq!(body["data"]["next_since"], Value::Null);
    assert_eq!(body["as_of"], AS_OF_TEXT);
    assert_eq!(
        body["data"]["events"][0],
        serde_json::to_value(alert("PETR4", "a1", T0)).unwrap()
    );
    // since is inclusive, as epoch millis or RFC 3339 (any offset; '+' encoded or not).
    for since in [
        (T0 + 1_000).to_string(),
        "2024-05-01T12:00:01Z".to_string(),
        "2024-05-01T09:00:01-03:00".to_string(),
        "2024-05-01T13:00:01%2B01:00".to_string(),
        "2024-05-01T13:00:01+01:00".to_string(),
    ] {
        let (status, body) = s
            .get(&format!("/v1/assets/PETR4/alerts?since={since}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{since}: {body}");
        assert_eq!(ids(&body, "alert_id"), ["a2", "a3"], "{since}");
        assert_eq!(body["data"]["since"], "2024-05-01T12:00:01.000Z");
    }
    let (_, body) = s
        .get(&format!("/v1/assets/PETR4/alerts?since={}", T0 + 1_001))
        .await;
    assert_eq!(ids(&body, "alert_id"), ["a3"]);
    let (_, body) = s
        .get(&format!("/v1/assets/PETR4/alerts?since={}", T0 + 2_001))
        .await;
    assert_eq!(ids(&body, "alert_id"), Vec::<String>::new());
    // Paging: limit, then since = next_since.
    let (_, body) = s.get("/v1/assets/PETR4/alerts?limit=2").await;
    assert_eq!(ids(&body, "alert_id"), ["a1", "a2"]);
    assert_eq!(body["data"]["next_since"], T0 + 2_000);
    let (_, body) = s
        .get(&format!(
            "/v1/assets/PETR4/alerts?limit=2&since={}",
            T0 + 2_000
        ))
        .await;
    assert_eq!(ids(&body, "alert_id"), ["a3"]);
    assert_eq!(body["data"]["next_since"], Value::Null);
    // Other symbols, including one that is a prefix of PETR4, stay apart.
    let (_, body) = s.get("/v1/assets/PETR/alerts").await;
    assert_eq!(ids(&body, "alert_id"), ["x1"]);
    let (status, body) = s.get("/v1/assets/ITUB4/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "alert_id"), Vec::<String>::new());
}

#[tokio::test]
async fn below_average_events_since() {
    let s = start().await;
    let (status, body) = s.get("/v1/assets/PETR4/below-average-events?since=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["events"],
        json!([serde_json::to_value(below_average()).unwrap()])
    );
    let (_, body) = s
        .get(&format!(
            "/v1/assets/PETR4/below-average-events?since={}",
            T0 + 501
        ))
        .await;
    assert_eq!(ids(&body, "event_id"), Vec::<String>::new());
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let s = start().await;
    let (status, doc) = s.get_with("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/v1/accounts/{account}/daily-balances",
            "/v1/accounts/{account}/daily-balances/{date}",
            "/v1/assets/{symbol}/alerts",
            "/v1/assets/{symbol}/below-average-events",
            "/v1/console/pipeline",
            "/v1/console/risk-latency",
            "/v1/console/topics/{topic}/records",
            "/v1/risk-decisions/{transaction_id}",
        ]
    );
    // Every documented route this router serves answers 200 with the documented examples,
    // and every path parameter of a template is documented.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let op = &item["get"];
        assert!(op["responses"]["200"].is_object(), "{path}");
        let mut url = path.clone();
        let mut query = Vec::new();
        for p in op["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (name, example) = (p["name"].as_str().unwrap(), p["example"].as_str());
            match p["in"].as_str().unwrap() {
                "path" => url = url.replace(&format!("{{{name}}}"), example.unwrap()),
                _ => {
                    if let Some(e) = example {
                        query.push(format!("{name}={e}"));
                    }
                }
            }
        }
        assert!(!url.contains('{'), "{path}: undocumented path parameter");
        if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
            continue; // served by the runtime's router
        }
        if crate::console::ROUTES.contains(&path.as_str()) {
            continue; // served by the console's router (src/console/tests.rs)
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let (status, body) = s.get(&url).await;
        assert_ne!(body, json!({"error": "no such route"}), "{url}");
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{url}: {status}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearerAuth"].is_object());
}

#[tokio::test]
async fn seeded_store_serves_the_seeded_rows() {
    let first = day("2024-01-01");
    let s = start_with(Auth::hs256(SECRET.as_bytes()).unwrap(), |store| {
        assert_eq!(seed_daily_balances(store, 3, 4, first).unwrap(), 12);
    })
    .await;
    let (status, body) = s
        .get("/v1/accounts/ACC-000002/daily-balances?from=2024-01-01&to=2024-01-05")
        .await;
    assert_eq!(status, StatusCode::OK);
    let days = body["data"]["days"].as_array().unwrap();
    assert_eq!(days.len(), 5);
    let mut running = Decimal::ZERO;
    for (i, d) in days.iter().take(4).enumerate() {
        let expected = seeded_balance(2, i, first);
        running += expected.net;
        assert_eq!(d["net"], expected.net.to_string());
        assert_eq!(d["total_credits"], expected.total_credits.to_string());
        assert_eq!(d["entry_count"], expected.entry_count);
        assert_eq!(d["running_balance"], running.to_string());
    }
    assert_eq!(days[4]["entry_count"], 0);
    assert_eq!(body["data"]["closing_balance"], running.to_string());
    let (status, _) = s
        .get("/v1/accounts/ACC-000003/daily-balances/2024-01-01")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The API answers the same from the ScyllaDB backend (on the test's Cassandra node, or the node
/// `FLUXO_TEST_SCYLLA` names) as from the embedded engine: every route of the fixture, compared
/// body for body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_backend_gives_the_same_answers() {
    let node = tokio::task::block_in_place(crate::engines::cassandra::shared_test_node);
    let settings = crate::config::ScyllaSettings {
        nodes: node.split(',').map(|s| s.trim().to_string()).collect(),
        keyspace: "fluxo_api_conformance".into(),
        replication: crate::config::Replication::Simple(1),
        consistency: "LOCAL_QUORUM".into(),
        local_dc: None,
        max_concurrency: 16,
    };
    let scylla = tokio::task::block_in_place(|| {
        let store = crate::state::scylla::ScyllaStore::connect(&settings).unwrap();
        fixture(&store);
        store
    });
    let auth = || Auth::hs256(SECRET.as_bytes()).unwrap();
    let embedded = start().await;
    let shared = start_on(auth(), Arc::new(scylla), tempfile::tempdir().unwrap()).await;
    let t = good();
    for path in [
        "/v1/accounts/ACC-1/daily-balances/2024-01-01",
        "/v1/accounts/ACC-1/daily-balances/2024-01-02",
        "/v1/accounts/NOPE/daily-balances/2024-01-02",
        "/v1/accounts/ACC-1/daily-balances?from=2023-12-30&to=2024-01-05",
        "/v1/accounts/ACC-2/daily-balances?from=2023-12-31&to=2023-12-31",
        "/v1/risk-decisions/tx-1",
        "/v1/risk-decisions/tx-404",
        "/v1/assets/PETR4/alerts",
        "/v1/assets/PETR4/alerts?limit=2",
        "/v1/assets/PETR4/alerts?since=2024-05-01T12:00:01Z&limit=1",
        "/v1/assets/PETR/alerts",
        "/v1/assets/PETR4/below-average-events",
        "/v1/assets/VALE3/below-average-events",
        "/v1/assets/NONE/alerts",
    ] {
        let want = embedded.get_with(path, Some(&t)).await;
        let got = shared.get_with(path, Some(&t)).await;
        assert_eq!(got, want, "{path}");
    }
}

/// A store whose reads stall for `stall` before answering nothing, as a frozen node would.
struct StalledStore {
    stall: Duration,
}

impl crate::state::StateStore for StalledStore {
    fn get(&self, _: &str, _: &[u8]) -> Result<Option<Vec<u8>>, crate::state::StoreError> {
        std::thread::sleep(self.stall);
        Ok(None)
    }

    fn scan(
        &self,
        _: &str,
        _: &[u8],
        _: &[u8],
        _: Option<&[u8]>,
        _: usize,
    ) -> Result<crate::state::Rows, crate::state::StoreError> {
        std::thread::sleep(self.stall);
        Ok(Vec::new())
    }

    fn commit(&self, _: WriteBatch) -> Result<(), crate::state::StoreError> {
        Ok(())
    }

    fn checkpoints(
        &self,
        _: &str,
    ) -> Result<Vec<crate::state::Checkpoint>, crate::state::StoreError> {
        Ok(Vec::new())
    }

    fn drop_namespace(&self, _: &str) -> Result<(), crate::state::StoreError> {
        Ok(())
    }
}

/// Every route that reads the store answers 503 with a JSON error at the read timeout when the
/// store stalls, and the server keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_gets_503_at_the_read_timeout() {
    let app = router(ApiState {
        store: Arc::new(StalledStore {
            stall: Duration::from_secs(3),
        }),
        auth: Arc::new(Auth::hs256(SECRET.as_bytes()).unwrap()),
        freshness: Arc::new(Freshness::new(AS_OF)),
        read_timeout: Duration::from_millis(300),
        reads: ReadGate::new(128),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = good();
    let client = reqwest::Client::new();
    let paths = [
        "/v1/accounts/ACC-1/daily-balances/2024-05-01",
        "/v1/accounts/ACC-1/daily-balances?from=2024-05-01&to=2024-05-03",
        "/v1/risk-decisions/tx-1",
        "/v1/assets/PETR4/alerts",
        "/v1/assets/PETR4/below-average-events?since=2024-05-01T00:00:00Z",
    ];
    let started = std::time::Instant::now();
    let answers = futures::future::join_all(paths.iter().map(|p| {
        client
            .get(format!("http://{addr}{p}"))
            .bearer_auth(&token)
            .send()
    }))
    .await;
    let took = started.elapsed();
    for (path, answer) in paths.iter().zip(answers) {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(answer.headers().contains_key("retry-after"), "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(
            body["error"], "the state store did not answer within 300 ms; retry later",
            "{path}"
        );
    }
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // Requests that do not read the store are not held up by the stalled reads.
    let spec = client
        .get(format!("http://{addr}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), StatusCode::OK);
}

/// Reads abandoned at the read timeout keep their place in the gate until the store answers:
/// with every place taken, further requests are answered 503 at once (no new blocking thread),
/// and reads are admitted again once the stalled ones end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_past_the_gate_limit_are_refused_at_once_until_the_stalled_ones_end() {
    let gate = ReadGate::new(2);
    let app = router(ApiState {
        store: Arc::new(StalledStore {
            stall: Duration::from_secs(2),
        }),
        auth: Arc::new(Auth::hs256(SECRET.as_bytes()).unwrap()),
        freshness: Arc::new(Freshness::new(AS_OF)),
        read_timeout: Duration::from_millis(300),
        reads: gate.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = good();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/risk-decisions/tx-1");
    let get = || async {
        let started = std::time::Instant::now();
        let answer = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.headers().contains_key("retry-after"));
        let body: Value = answer.json().await.unwrap();
        (
            body["error"].as_str().unwrap().to_string(),
            started.elapsed(),
        )
    };
    // Two reads take both places and time out; the stalled store still holds them.
    let first = futures::future::join_all([get(), get()]).await;
    for (error, _) in &first {
        assert_eq!(
            error,
            "the state store did not answer within 300 ms; retry later"
        );
    }
    assert_eq!(gate.in_flight(), 2, "the abandoned reads still run");
    let refused = futures::future::join_all((0..6).map(|_| get())).await;
    for (error, took) in &refused {
        assert_eq!(
            error,
            "too many state store reads in flight (limit 2); retry later"
        );
        assert!(*took < Duration::from_millis(250), "refused after {took:?}");
    }
    assert_eq!(gate.in_flight(), 2, "refused requests took no place");
    // Once the stalled reads end, their places are free for new reads.
    let freed = std::time::Instant::now();
    while gate.in_flight() > 0 {
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "places never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (error, _) = get().await;
    assert_eq!(
        error,
        "the state store did not answer within 300 ms; retry later"
    );
}
