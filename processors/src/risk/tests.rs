//! Tests of the risk-scoring processor as a whole.

// Tests start from `Config::default()` and change the one knob under test.
#![allow(clippy::field_reassign_with_default)]

use super::documents::generate_cpf;
use super::resilience::UnavailableCause;
use super::store::{PayerState, BLACKLIST_TABLE, FORMAT_VERSION, PAYERS_TABLE};
use super::*;
use crate::config::{ConfigDecimal, DurationMs};
use crate::events::{BlacklistEntry, Decision, RiskDecision, RiskReason, Transaction};
use crate::state::MemoryState;
use crate::{views, Context, Millis, Processor, RecordMeta, Rejection};
use chrono::DateTime;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::str::FromStr;

const PAYER: &str = "529.982.247-25";
const PAYER_DIGITS: &str = "52998224725";
const PAYEE: &str = "11.222.333/0001-81";
const PAYEE_DIGITS: &str = "11222333000181";
const OTHER_PAYEE: &str = "12.345.678/0001-95";
const MIN: Millis = 60_000;

/// The document key of these tests.
const TEST_KEY: &[u8] = b"risk tests document key";

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(TEST_KEY).unwrap()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// 2024-06-03 12:00 in São Paulo (UTC-3).
fn noon() -> Millis {
    at("2024-06-03T15:00:00Z")
}

fn at(rfc3339: &str) -> Millis {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn tx(id: &str, payer: &str, payee: &str, amount: &str, event_time: Millis) -> Transaction {
    Transaction {
        transaction_id: id.into(),
        kind: crate::events::TransactionKind::Pix,
        payer_document: payer.into(),
        payer_name: "Maria Silva".into(),
        payee_document: payee.into(),
        amount: d(amount),
        channel: "app".into(),
        event_time,
    }
}

fn listed(doc: &str, reason: &str) -> RiskInput {
    RiskInput::Blacklist {
        key: doc.into(),
        entry: Some(BlacklistEntry {
            document: doc.into(),
            listed: true,
            reason: reason.into(),
            source: "coaf".into(),
            since: at("2024-01-02T00:00:00Z"),
        }),
    }
}

fn reason(rule_id: &str, contribution: i32, text: &str) -> RiskReason {
    RiskReason {
        rule_id: rule_id.into(),
        contribution,
        text: text.into(),
    }
}

/// A config where every rule is off, to test one rule at a time.
fn quiet() -> Config {
    let mut c = Config::default();
    c.rules.amount_ratio.weight = 0;
    c.rules.amount_zscore.weight = 0;
    c.rules.velocity_10m.count_weight = 0;
    c.rules.velocity_10m.sum_weight = 0;
    c.rules.velocity_1h.count_weight = 0;
    c.rules.velocity_1h.sum_weight = 0;
    c.rules.new_payee.weight = 0;
    c.rules.night.weight = 0;
    c
}

/// A processor over a `MemoryState` it flushes into.
struct Harness {
    p: RiskProcessor,
    state: MemoryState,
    offset: i64,
}

impl Harness {
    fn new(config: Config) -> Self {
        config.validate().unwrap();
        Self {
            p: RiskProcessor::new(config, pseudonymizer()),
            state: MemoryState::new(),
            offset: 0,
        }
    }

    fn input(
        &mut self,
        input: RiskInput,
        processing_time: Millis,
    ) -> Result<Vec<RiskDecision>, Rejection> {
        self.input_at(input, None, processing_time)
    }

    /// `input` as a record stamped `timestamp` by Kafka.
    fn input_at(
        &mut self,
        input: RiskInput,
        timestamp: Option<Millis>,
        processing_time: Millis,
    ) -> Result<Vec<RiskDecision>, Rejection> {
        let mut out = Vec::new();
        self.offset += 1;
        let meta = RecordMeta {
            topic: "transactions",
            partition: 0,
            offset: self.offset,
            timestamp,
            processing_time,
        };
        let mut ctx = Context::new(meta, &self.state, &mut out);
        self.p.process(&mut ctx, input)?;
        Ok(out)
    }

    fn decide_with(&mut self, t: Transaction, validation: ExternalValidation) -> RiskDecision {
        let pt = t.event_time + 150;
        let mut out = self
            .input(RiskInput::Transaction { tx: t, validation }, pt)
            .unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn decide(&mut self, t: Transaction) -> RiskDecision {
        self.decide_with(t, ExternalValidation::not_configured())
    }

    fn feed(&mut self, input: RiskInput) {
        assert_eq!(self.input(input, 0).unwrap(), vec![]);
    }

    fn flush(&mut self) {
        self.p.flush(&mut self.state);
    }
}

#[test]
fn clean_transaction_is_approved_with_latency() {
    let mut h = Harness::new(Config::default());
    let t0 = noon();
    let out = h.decide(tx("t1", PAYER, PAYEE, "120.50", t0));
    assert_eq!(
        out,
        RiskDecision {
            transaction_id: "t1".into(),
            score: 0,
            decision: Decision::Approve,
            reasons: vec![],
            degraded: false,
            event_time: t0,
            decided_at: t0 + 150,
            latency_ms: 150,
        }
    );
}

/// The SLA clock starts when the transaction reached Kafka: a transaction whose event time is 20
/// minutes old but that was produced 40 ms before the decision has a latency of 40 ms; one
/// stamped by Kafka before its (skewed, future) event time counts from the event time.
#[test]
fn latency_counts_from_the_later_of_event_time_and_kafka_arrival() {
    let mut h = Harness::new(Config::default());
    let t0 = noon();
    let arrived = t0 + 20 * 60_000;
    let tx_late = RiskInput::Transaction {
        tx: tx("late", PAYER, PAYEE, "10.00", t0),
        validation: ExternalValidation::not_configured(),
    };
    let out = h.input_at(tx_late, Some(arrived), arrived + 40).unwrap();
    assert_eq!(out[0].latency_ms, 40);
    assert_eq!(out[0].event_time, t0);
    assert_eq!(out[0].decided_at, arrived + 40);

    let skewed = RiskInput::Transaction {
        tx: tx("skewed", PAYER, PAYEE, "10.00", t0 + 5_000),
        validation: ExternalValidation::not_configured(),
    };
    let out = h.input_at(skewed, Some(t0), t0 + 5_100).unwrap();
    assert_eq!(out[0].latency_ms, 100);

    // No Kafka timestamp (a record without one): event time, as before.
    assert_eq!(arrival(t0, None), t0);
}

#[test]
fn invalid_payer_rejects_with_invalid_document() {
    let mut h = Harness::new(Config::default());
    let out = h.decide(tx("t1", "529.982.247-26", PAYEE, "10.00", noon()));
    assert_eq!(out.score, 1000);
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(
        out.reasons,
        vec![reason(
            "invalid_document",
            1000,
            "payer document ***.982.247-** has wrong CPF check digits"
        )]
    );
    h.flush();
    assert!(
        h.state.table(PAYERS_TABLE).is_empty(),
        "no state for invalid payers"
    );
}

#[test]
fn invalid_documents_of_every_shape_are_decisions_not_dead_letters() {
    let mut h = Harness::new(quiet());
    let cases = [
        (
            "111.111.111-11",
            "payer document ***.111.111-** is a repeated-digit sequence",
        ),
        (
            "5299822472",
            "payer document ****822*** has 10 digits, expected 11 (CPF) or 14 (CNPJ)",
        ),
        ("", "payer document  is empty"),
        (
            "52998224x25",
            "payer document ****822**** contains a character that is not a digit",
        ),
    ];
    for (i, (payer, text)) in cases.into_iter().enumerate() {
        let out = h.decide(tx(&format!("t{i}"), payer, PAYEE, "10.00", noon()));
        assert_eq!(out.decision, Decision::Reject);
        assert_eq!(out.reasons, vec![reason("invalid_document", 1000, text)]);
    }
}

#[test]
fn invalid_payee_rejects_and_only_velocity_is_learned() {
    let mut h = Harness::new(Config::default());
    let out = h.decide(tx("t1", PAYER, "11.222.333/0001-82", "10.00", noon()));
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(
        out.reasons,
        vec![reason(
            "invalid_document",
            1000,
            "payee document **.222.333/0001-** has wrong CNPJ check digits"
        )]
    );
    h.flush();
    let rows = h.state.table(PAYERS_TABLE);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, pseudonymizer().pseudonym(PAYER).hex().as_bytes());
    let p: PayerState = store::decode_payer(rows[0].1).unwrap();
    assert_eq!(p.count, 0, "rejected amounts stay out of the statistics");
    assert_eq!(p.recent.len(), 1, "attempts count for velocity");
    assert!(p.known_payees.is_empty());
}

#[test]
fn blacklisted_payer_is_rejected_whatever_the_punctuation() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYER_DIGITS, "fraude confirmada"));
    let out = h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    assert_eq!(out.score, 1000);
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(
        out.reasons,
        vec![reason(
            "blacklist_payer",
            1000,
            "payer ***.982.247-** is blacklisted by coaf since 2024-01-02: fraude confirmada"
        )]
    );
}

#[test]
fn blacklisted_payee_is_rejected() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYEE, "conta laranja"));
    let out = h.decide(tx("t1", PAYER, PAYEE_DIGITS, "10.00", noon()));
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(
        out.reasons,
        vec![reason(
            "blacklist_payee",
            1000,
            "payee **.222.333/0001-** is blacklisted by coaf since 2024-01-02: conta laranja"
        )]
    );
}

#[test]
fn blacklist_reason_texts_are_redacted() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYER, "ligado ao CPF 111.444.777-35"));
    let out = h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    assert_eq!(
        out.reasons[0].text,
        "payer ***.982.247-** is blacklisted by coaf since 2024-01-02: ligado ao CPF ***.444.777-**"
    );
}

#[test]
fn blacklist_changes_apply_to_later_transactions_only() {
    let mut h = Harness::new(Config::default());
    let t0 = noon();
    assert_eq!(
        h.decide(tx("t1", PAYER, PAYEE, "10.00", t0)).decision,
        Decision::Approve
    );
    h.feed(listed(PAYER, "x"));
    assert_eq!(
        h.decide(tx("t2", PAYER, PAYEE, "10.00", t0 + MIN)).decision,
        Decision::Reject
    );
}

#[test]
fn tombstone_and_unlisting_remove_a_document() {
    for removal in [
        RiskInput::Blacklist {
            key: PAYER.into(),
            entry: None,
        },
        RiskInput::Blacklist {
            key: PAYER_DIGITS.into(),
            entry: Some(BlacklistEntry {
                document: PAYER.into(),
                listed: false,
                reason: "engano".into(),
                source: "internal".into(),
                since: 0,
            }),
        },
    ] {
        let mut h = Harness::new(Config::default());
        h.feed(listed(PAYER, "x"));
        h.flush();
        assert_eq!(h.state.table(BLACKLIST_TABLE).len(), 1);
        h.feed(removal);
        let out = h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
        assert_eq!(out.decision, Decision::Approve);
        assert!(out.reasons.is_empty());
        h.flush();
        assert!(
            h.state.table(BLACKLIST_TABLE).is_empty(),
            "deleted from state"
        );
        // A fresh instance over the state agrees.
        let mut fresh = Harness {
            p: RiskProcessor::new(Config::default(), pseudonymizer()),
            state: h.state.clone(),
            offset: 0,
        };
        assert_eq!(
            fresh
                .decide(tx("t2", PAYER, PAYEE, "10.00", noon()))
                .decision,
            Decision::Approve
        );
    }
}

#[test]
fn blacklist_survives_a_restart() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYEE, "x"));
    h.flush();
    let stored = h.state.table(BLACKLIST_TABLE);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].0,
        pseudonymizer().pseudonym(PAYEE_DIGITS).hex().as_bytes()
    );
    assert_eq!(stored[0].1[0], FORMAT_VERSION);
    let mut fresh = Harness {
        p: RiskProcessor::new(Config::default(), pseudonymizer()),
        state: h.state.clone(),
        offset: 0,
    };
    let out = fresh.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    assert_eq!(out.reasons[0].rule_id, "blacklist_payee");
}

#[test]
fn unreadable_blacklist_entries_fail_closed() {
    let mut h = Harness::new(Config::default());
    crate::StateWriter::put(
        &mut h.state,
        BLACKLIST_TABLE,
        pseudonymizer().pseudonym(PAYER_DIGITS).hex().as_bytes(),
        &[7, 7],
    );
    let out = h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(
        out.reasons,
        vec![reason(
            "blacklist_payer",
            1000,
            "payer ***.982.247-** is blacklisted by state since 1970-01-01: unreadable blacklist entry"
        )]
    );
}

#[test]
fn bad_blacklist_records_are_dead_lettered_without_state_change() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYEE, "x"));
    h.flush();
    let before = h.state.clone();
    let err = h
        .input(
            RiskInput::Blacklist {
                key: PAYER.into(),
                entry: Some(BlacklistEntry {
                    document: "111.444.777-35".into(),
                    listed: true,
                    reason: "x".into(),
                    source: "coaf".into(),
                    since: 0,
                }),
            },
            0,
        )
        .unwrap_err();
    assert_eq!(err.reason, "key_mismatch");
    assert_eq!(
        err.detail,
        "blacklist record key ***.982.247-** differs from its document ***.444.777-**"
    );
    let err = h
        .input(
            RiskInput::Blacklist {
                key: " - ".into(),
                entry: None,
            },
            0,
        )
        .unwrap_err();
    assert_eq!(err.reason, "invalid_key");
    h.flush();
    assert_eq!(h.state, before);
}

#[test]
fn unusable_transactions_are_dead_lettered_without_state_change() {
    let mut h = Harness::new(Config::default());
    h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    h.flush();
    let before = h.state.clone();
    let err = h
        .input(
            RiskInput::Transaction {
                tx: tx("t2", PAYER, PAYEE, "0.00", noon()),
                validation: ExternalValidation::not_configured(),
            },
            noon(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::new(
            "invalid_amount",
            "transaction t2 has amount 0.00, it must be greater than 0"
        )
    );
    let err = h
        .input(
            RiskInput::Transaction {
                tx: tx("", PAYER, PAYEE, "5.00", noon()),
                validation: ExternalValidation::not_configured(),
            },
            noon(),
        )
        .unwrap_err();
    assert_eq!(err.reason, "missing_transaction_id");
    assert_eq!(h.p.pending_decisions(), 0);
    h.flush();
    assert_eq!(h.state, before);
}

#[test]
fn unavailable_validator_marks_the_decision_degraded() {
    let mut h = Harness::new(Config::default());
    let out = h.decide_with(
        tx("t1", PAYER, PAYEE, "10.00", noon()),
        ExternalValidation {
            payer: ExternalVerdict::Unavailable(UnavailableCause::Timeout),
            payee: ExternalVerdict::Clean,
        },
    );
    assert!(out.degraded);
    assert_eq!(out.decision, Decision::Approve);
    assert_eq!(out.score, 0);
    assert_eq!(
        out.reasons,
        vec![reason(
            "external_unavailable",
            0,
            "external validation of the payer ***.982.247-** unavailable (timeout); decided on local data"
        )]
    );
    for (i, v) in [ExternalVerdict::Clean, ExternalVerdict::NotConfigured]
        .into_iter()
        .enumerate()
    {
        let out = h.decide_with(
            tx(&format!("t2-{i}"), PAYER, PAYEE, "10.00", noon()),
            ExternalValidation {
                payer: v.clone(),
                payee: v,
            },
        );
        assert!(!out.degraded);
        assert!(out.reasons.is_empty());
    }
    let out = h.decide_with(
        tx("t3", PAYER, PAYEE, "10.00", noon()),
        ExternalValidation {
            payer: ExternalVerdict::Clean,
            payee: ExternalVerdict::Unavailable(UnavailableCause::CircuitOpen),
        },
    );
    assert!(out.degraded);
    assert_eq!(
        out.reasons[0].text,
        "external validation of the payee **.222.333/0001-** unavailable (circuit_open); decided on local data"
    );
}

#[test]
fn verdicts_on_invalid_documents_are_ignored() {
    let mut h = Harness::new(Config::default());
    let out = h.decide_with(
        tx("t1", PAYER, "11.222.333/0001-82", "10.00", noon()),
        ExternalValidation {
            payer: ExternalVerdict::Clean,
            payee: ExternalVerdict::Unavailable(UnavailableCause::Timeout),
        },
    );
    assert!(!out.degraded);
    let ids: Vec<_> = out.reasons.iter().map(|r| r.rule_id.as_str()).collect();
    assert_eq!(ids, ["invalid_document"]);
}

#[test]
fn flagged_documents_add_weight_or_reject() {
    let flagged = ExternalValidation {
        payer: ExternalVerdict::Clean,
        payee: ExternalVerdict::Flagged {
            reason: "CNPJ 11222333000181 inapto".into(),
        },
    };
    let mut h = Harness::new(Config::default());
    let out = h.decide_with(tx("t1", PAYER, PAYEE, "10.00", noon()), flagged.clone());
    assert_eq!(out.score, 500);
    assert_eq!(out.decision, Decision::Review);
    assert!(!out.degraded);
    assert_eq!(
        out.reasons,
        vec![reason(
            "external_payee",
            500,
            "external validator flagged the payee **.222.333/0001-**: CNPJ **.222.333/0001-** inapto"
        )]
    );

    let mut c = Config::default();
    c.external.flagged_rejects = true;
    let mut h = Harness::new(c);
    let out = h.decide_with(tx("t1", PAYER, PAYEE, "10.00", noon()), flagged);
    assert_eq!(out.score, 1000);
    assert_eq!(out.decision, Decision::Reject);
    assert_eq!(out.reasons[0].contribution, 1000);
}

/// A harness whose payer already paid `amounts` to PAYEE, 15 minutes apart from `start`.
fn with_history(config: Config, amounts: &[&str], start: Millis) -> Harness {
    let mut h = Harness::new(config);
    for (i, a) in amounts.iter().enumerate() {
        let out = h.decide(tx(
            &format!("h{i}"),
            PAYER,
            PAYEE,
            a,
            start + i as i64 * 15 * MIN,
        ));
        assert_eq!(out.decision, Decision::Approve, "history {i}: {out:?}");
    }
    h
}

#[test]
fn amount_ratio_fires_at_its_threshold() {
    let hist = ["100.00"; 5];
    let t = noon() + 5 * 15 * MIN;
    let mut h = with_history(Config::default(), &hist, noon());
    let out = h.decide(tx("t", PAYER, PAYEE, "500.00", t));
    assert_eq!(
        out.reasons,
        vec![reason(
            "amount_ratio",
            250,
            "amount 500.00 BRL is 5.00x the payer's average of 100.00 BRL over 5 transactions (threshold 5x)"
        )]
    );
    assert_eq!((out.score, out.decision), (250, Decision::Approve));

    let mut h = with_history(Config::default(), &hist, noon());
    assert!(h
        .decide(tx("t", PAYER, PAYEE, "499.99", t))
        .reasons
        .is_empty());

    // Below min_history nothing fires, even at 10x.
    let mut h = with_history(Config::default(), &hist[..4], noon());
    assert!(h
        .decide(tx("t", PAYER, PAYEE, "1000.00", t))
        .reasons
        .is_empty());
}

#[test]
fn amount_zscore_fires_at_its_threshold() {
    // Mean 100, sample standard deviation exactly 10.
    let hist = ["90", "110", "100", "90", "110"];
    let t = noon() + 5 * 15 * MIN;
    let mut h = with_history(Config::default(), &hist, noon());
    let out = h.decide(tx("t", PAYER, PAYEE, "130.00", t));
    assert_eq!(
        out.reasons,
        vec![reason(
            "amount_zscore",
            200,
            "amount 130.00 BRL is 3.00 standard deviations above the payer's average of 100.00 BRL (threshold 3)"
        )]
    );
    let mut h = with_history(Config::default(), &hist, noon());
    assert!(h
        .decide(tx("t", PAYER, PAYEE, "129.99", t))
        .reasons
        .is_empty());
    // A constant history has no spread: the z-score is not evaluated.
    let mut h = with_history(Config::default(), &["100"; 5], noon());
    assert!(h
        .decide(tx("t", PAYER, PAYEE, "130.00", t))
        .reasons
        .is_empty());
}

#[test]
fn velocity_count_fires_at_its_threshold_inside_the_window() {
    let mut c = quiet();
    c.rules.velocity_10m.count = 3;
    c.rules.velocity_10m.count_weight = 150;
    let t0 = noon();
    let mut h = Harness::new(c.clone());
    assert!(h
        .decide(tx("a", PAYER, PAYEE, "1.00", t0))
        .reasons
        .is_empty());
    assert!(h
        .decide(tx("b", PAYER, PAYEE, "1.00", t0 + MIN))
        .reasons
        .is_empty());
    let out = h.decide(tx("c", PAYER, PAYEE, "1.00", t0 + 2 * MIN));
    assert_eq!(
        out.reasons,
        vec![reason(
            "velocity_count_10m",
            150,
            "3 transactions from this payer in the last 10m (threshold 3)"
        )]
    );
    // Exactly 10 minutes later the first one is outside the window (t - 10m, t].
    let mut h = Harness::new(c);
    h.decide(tx("a", PAYER, PAYEE, "1.00", t0));
    h.decide(tx("b", PAYER, PAYEE, "1.00", t0 + 5 * MIN));
    assert!(h
        .decide(tx("c", PAYER, PAYEE, "1.00", t0 + 10 * MIN))
        .reasons
        .is_empty());
}

#[test]
fn velocity_sum_fires_at_its_threshold() {
    let mut c = quiet();
    c.rules.velocity_10m.sum_weight = 200;
    let t0 = noon();
    let mut h = Harness::new(c.clone());
    h.decide(tx("a", PAYER, PAYEE, "5000.00", t0));
    let out = h.decide(tx("b", PAYER, PAYEE, "5000.00", t0 + 9 * MIN));
    assert_eq!(
        out.reasons,
        vec![reason(
            "velocity_sum_10m",
            200,
            "10000.00 BRL from this payer in the last 10m (threshold 10000.00 BRL)"
        )]
    );
    let mut h = Harness::new(c);
    h.decide(tx("a", PAYER, PAYEE, "5000.00", t0));
    assert!(h
        .decide(tx("b", PAYER, PAYEE, "4999.99", t0 + 9 * MIN))
        .reasons
        .is_empty());
}

#[test]
fn hourly_velocity_fires_at_its_thresholds() {
    let mut c = quiet();
    c.rules.velocity_1h.count = 3;
    c.rules.velocity_1h.count_weight = 100;
    c.rules.velocity_1h.sum = ConfigDecimal(d("300"));
    c.rules.velocity_1h.sum_weight = 120;
    let t0 = noon();
    let mut h = Harness::new(c.clone());
    h.decide(tx("a", PAYER, PAYEE, "100.00", t0));
    h.decide(tx("b", PAYER, PAYEE, "100.00", t0 + 30 * MIN));
    let out = h.decide(tx("c", PAYER, PAYEE, "100.00", t0 + 60 * MIN - 1));
    assert_eq!(
        out.reasons,
        vec![
            reason(
                "velocity_count_1h",
                100,
                "3 transactions from this payer in the last 1h (threshold 3)"
            ),
            reason(
                "velocity_sum_1h",
                120,
                "300.00 BRL from this payer in the last 1h (threshold 300.00 BRL)"
            ),
        ]
    );
    assert_eq!(out.score, 220);
    let mut h = Harness::new(c);
    h.decide(tx("a", PAYER, PAYEE, "100.00", t0));
    h.decide(tx("b", PAYER, PAYEE, "100.00", t0 + 30 * MIN));
    assert!(h
        .decide(tx("c", PAYER, PAYEE, "100.00", t0 + 60 * MIN))
        .reasons
        .is_empty());
}

#[test]
fn late_transactions_count_only_what_precedes_them() {
    let mut c = quiet();
    c.rules.velocity_10m.count = 2;
    c.rules.velocity_10m.count_weight = 150;
    let t0 = noon();
    let mut h = Harness::new(c);
    h.decide(tx("a", PAYER, PAYEE, "1.00", t0 + 30 * MIN));
    // Late: 30 minutes before "a", nothing else in its window.
    assert!(h
        .decide(tx("b", PAYER, PAYEE, "1.00", t0))
        .reasons
        .is_empty());
    let out = h.decide(tx("c", PAYER, PAYEE, "1.00", t0 + 5 * MIN));
    assert_eq!(
        out.reasons[0].text,
        "2 transactions from this payer in the last 10m (threshold 2)"
    );
}

#[test]
fn new_payee_fires_at_its_threshold_once_history_exists() {
    let hist = ["100.00"; 3];
    let t = noon() + 3 * 15 * MIN;
    let mut h = with_history(Config::default(), &hist, noon());
    let out = h.decide(tx("t", PAYER, OTHER_PAYEE, "5000.00", t));
    assert_eq!(
        out.reasons,
        vec![reason(
            "new_payee",
            200,
            "5000.00 BRL to payee **.345.678/0001-** never paid before by this payer (threshold 5000.00 BRL)"
        )]
    );
    // Approved, so the payee is now known.
    assert!(h
        .decide(tx("t2", PAYER, OTHER_PAYEE, "5000.00", t + 15 * MIN))
        .reasons
        .is_empty());

    let mut h = with_history(Config::default(), &hist, noon());
    assert!(h
        .decide(tx("t", PAYER, OTHER_PAYEE, "4999.99", t))
        .reasons
        .is_empty());
    let mut h = with_history(Config::default(), &hist, noon());
    assert!(
        h.decide(tx("t", PAYER, PAYEE, "5000.00", t))
            .reasons
            .is_empty(),
        "known payee"
    );
    let mut h = with_history(Config::default(), &hist[..2], noon());
    assert!(
        h.decide(tx("t", PAYER, OTHER_PAYEE, "5000.00", t))
            .reasons
            .is_empty(),
        "no history"
    );
}

#[test]
fn night_rule_uses_sao_paulo_local_time() {
    let mut h = Harness::new(Config::default());
    let night = |h: &mut Harness, utc: &str, amount: &str| {
        // One id per instant: a repeated id would be dropped as a duplicate.
        h.decide(tx(&format!("n-{utc}"), PAYER, PAYEE, amount, at(utc)))
            .reasons
    };
    // 22:00 in São Paulo is 01:00 UTC.
    assert_eq!(
        night(&mut h, "2024-06-04T01:00:00Z", "1000.00"),
        vec![reason(
            "night_amount",
            150,
            "1000.00 BRL at 22:00 local time (America/Sao_Paulo), inside the night window 22h-6h (threshold 1000.00 BRL)"
        )]
    );
    assert!(
        night(&mut h, "2024-06-04T00:59:59Z", "1000.00").is_empty(),
        "21:59"
    );
    assert_eq!(
        night(&mut h, "2024-06-04T08:59:00Z", "1000.00").len(),
        1,
        "05:59"
    );
    assert!(
        night(&mut h, "2024-06-04T09:00:00Z", "1000.00").is_empty(),
        "06:00"
    );
    assert!(
        night(&mut h, "2024-06-04T02:00:00Z", "999.99").is_empty(),
        "below amount"
    );
}

#[test]
fn night_window_without_wrap_and_other_time_zone() {
    let mut c = quiet();
    c.rules.night.weight = 150;
    c.rules.night.start_hour = 1;
    c.rules.night.end_hour = 5;
    c.time_zone = "UTC".into();
    let mut h = Harness::new(c);
    let out = h.decide(tx("n", PAYER, PAYEE, "1000.00", at("2024-06-04T01:00:00Z")));
    assert_eq!(
        out.reasons[0].text,
        "1000.00 BRL at 01:00 local time (UTC), inside the night window 1h-5h (threshold 1000.00 BRL)"
    );
    assert!(h
        .decide(tx(
            "n2",
            PAYER,
            PAYEE,
            "1000.00",
            at("2024-06-04T05:00:00Z")
        ))
        .reasons
        .is_empty());
    assert!(h
        .decide(tx(
            "n3",
            PAYER,
            PAYEE,
            "1000.00",
            at("2024-06-04T23:00:00Z")
        ))
        .reasons
        .is_empty());
}

#[test]
fn thresholds_and_cap() {
    let mut c = quiet();
    c.rules.night.weight = 399;
    c.rules.new_payee.weight = 0;
    let mut h = Harness::new(c.clone());
    let t = at("2024-06-04T02:00:00Z");
    let out = h.decide(tx("a", PAYER, PAYEE, "1000.00", t));
    assert_eq!((out.score, out.decision), (399, Decision::Approve));

    c.rules.night.weight = 400;
    let mut h = Harness::new(c.clone());
    let out = h.decide(tx("a", PAYER, PAYEE, "1000.00", t));
    assert_eq!((out.score, out.decision), (400, Decision::Review));

    c.rules.night.weight = 699;
    let mut h = Harness::new(c.clone());
    assert_eq!(
        h.decide(tx("a", PAYER, PAYEE, "1000.00", t)).decision,
        Decision::Review
    );

    c.rules.night.weight = 700;
    let mut h = Harness::new(c.clone());
    assert_eq!(
        h.decide(tx("a", PAYER, PAYEE, "1000.00", t)).decision,
        Decision::Reject
    );

    // 700 + 600 is capped at 1000.
    c.rules.velocity_10m.sum_weight = 600;
    c.rules.velocity_10m.sum = ConfigDecimal(d("1000"));
    let mut h = Harness::new(c);
    let out = h.decide(tx("a", PAYER, PAYEE, "1000.00", t));
    assert_eq!(out.reasons.len(), 2);
    assert_eq!((out.score, out.decision), (1000, Decision::Reject));
}

#[test]
fn rejected_outliers_do_not_shift_the_average() {
    let t0 = noon();
    let mut h = with_history(Config::default(), &["100.00"; 5], t0);
    h.feed(listed(PAYER, "x"));
    let out = h.decide(tx("big", PAYER, PAYEE, "1000000.00", t0 + 100 * MIN));
    assert_eq!(out.decision, Decision::Reject);
    h.feed(RiskInput::Blacklist {
        key: PAYER.into(),
        entry: None,
    });
    let out = h.decide(tx("t", PAYER, PAYEE, "500.00", t0 + 200 * MIN));
    assert_eq!(out.reasons[0].rule_id, "amount_ratio");
    assert!(out.reasons[0]
        .text
        .contains("average of 100.00 BRL over 5 transactions"));
}

#[test]
fn hard_rejects_still_explain_behaviour() {
    let mut h = with_history(Config::default(), &["100.00"; 5], noon());
    h.feed(listed(PAYEE, "x"));
    let out = h.decide(tx("t", PAYER, PAYEE, "500.00", noon() + 100 * MIN));
    let ids: Vec<_> = out.reasons.iter().map(|r| r.rule_id.as_str()).collect();
    assert_eq!(ids, ["blacklist_payee", "amount_ratio"]);
    assert_eq!(out.score, 1000);
}

#[test]
fn decisions_are_written_to_the_view_on_flush() {
    let mut h = Harness::new(Config::default());
    let a = h.decide(tx("t1", PAYER, PAYEE, "10.00", noon()));
    let b = h.decide(tx("t2", "1", PAYEE, "10.00", noon()));
    assert!(
        h.state.table(views::RISK_DECISIONS).is_empty(),
        "only on flush"
    );
    assert_eq!(h.p.pending_decisions(), 2);
    h.flush();
    assert_eq!(h.p.pending_decisions(), 0);
    let rows = h.state.table(views::RISK_DECISIONS);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, b"t1");
    assert_eq!(
        serde_json::from_slice::<RiskDecision>(rows[0].1).unwrap(),
        a
    );
    assert_eq!(
        serde_json::from_slice::<RiskDecision>(rows[1].1).unwrap(),
        b
    );
    let v: serde_json::Value = serde_json::from_slice(rows[1].1).unwrap();
    assert_eq!(v["decision"], "REJECT");
}

#[test]
fn log_fields_are_masked() {
    let mut h = Harness::new(Config::default());
    h.feed(listed(PAYEE, "x"));
    let t = tx("t1", PAYER, PAYEE, "10.00", noon());
    let out = h.decide(t.clone());
    assert_eq!(
        decision_log_fields(&out),
        serde_json::json!({
            "transaction_id": "t1",
            "score": 1000,
            "decision": "REJECT",
            "reasons": [{
                "rule_id": "blacklist_payee",
                "contribution": 1000,
                "text": "payee **.222.333/0001-** is blacklisted by coaf since 2024-01-02: x",
            }],
            "degraded": false,
            "latency_ms": 150,
            "event_time": noon(),
            "decided_at": noon() + 150,
        })
    );
    assert_eq!(
        transaction_log_fields(&t),
        serde_json::json!({
            "transaction_id": "t1",
            "kind": "PIX",
            "payer": "***.982.247-**",
            "payee": "**.222.333/0001-**",
            "amount": "10.00",
            "channel": "app",
            "event_time": noon(),
        })
    );
    let debug = format!(
        "{:?}",
        RiskInput::Transaction {
            tx: t,
            validation: ExternalValidation {
                payer: ExternalVerdict::Flagged {
                    reason: "ver 52998224725".into()
                },
                payee: ExternalVerdict::Clean,
            }
        }
    );
    assert!(
        !debug.contains(PAYER_DIGITS) && !debug.contains(PAYER),
        "{debug}"
    );
    assert!(
        !debug.contains(PAYEE_DIGITS) && !debug.contains(PAYEE),
        "{debug}"
    );
    assert!(debug.contains("***.982.247-**"), "{debug}");
}

/// A deterministic mixed series: 6 payers, 4 payees, blacklist changes, degraded verdicts,
/// night hours, bursts and outliers.
fn series(n: usize) -> Vec<(RiskInput, Millis)> {
    let payers: Vec<String> = (0..6u64)
        .map(|i| generate_cpf(100_000_000 + i * 7_919))
        .collect();
    let payees: Vec<String> = (0..4u64)
        .map(|i| super::documents::generate_cnpj(20_000_000 + i, 1))
        .collect();
    let mut out = Vec::new();
    let mut t = at("2024-06-03T20:00:00Z");
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let r = next();
        t += (r % 240_000) as i64;
        if i % 17 == 5 {
            let doc = &payees[(r % 4) as usize];
            let input = if r % 3 == 0 {
                RiskInput::Blacklist {
                    key: doc.clone(),
                    entry: None,
                }
            } else {
                listed(doc, "teste")
            };
            out.push((input, t));
            continue;
        }
        let payer = &payers[(r >> 8) as usize % payers.len()];
        let payee = &payees[(r >> 16) as usize % payees.len()];
        let cents = if r % 11 == 0 {
            900_000 + (r >> 20) % 5_000_000
        } else {
            1_000 + (r >> 20) % 60_000
        };
        let amount = Decimal::new(cents as i64, 2).to_string();
        let payer = if i % 23 == 7 {
            "123.456.789-00".to_string()
        } else {
            payer.clone()
        };
        let validation = ExternalValidation {
            payer: match r % 13 {
                0 => ExternalVerdict::Unavailable(UnavailableCause::Timeout),
                1 => ExternalVerdict::Flagged {
                    reason: "pep".into(),
                },
                _ => ExternalVerdict::Clean,
            },
            payee: ExternalVerdict::NotConfigured,
        };
        out.push((
            RiskInput::Transaction {
                tx: tx(&format!("tx-{i}"), &payer, payee, &amount, t),
                validation,
            },
            t + 80,
        ));
    }
    out
}

fn run(
    h: &mut Harness,
    inputs: &[(RiskInput, Millis)],
    flush_every: usize,
) -> Vec<Result<Vec<RiskDecision>, Rejection>> {
    let mut outs = Vec::new();
    for (i, (input, pt)) in inputs.iter().enumerate() {
        outs.push(h.input(input.clone(), *pt));
        if flush_every > 0 && i % flush_every == flush_every - 1 {
            h.flush();
        }
    }
    outs
}

/// Default config with velocity counts low enough for [`series`] to reach them.
fn series_config() -> Config {
    let mut c = Config::default();
    c.rules.velocity_10m.count = 3;
    c.rules.velocity_1h.count = 8;
    c
}

#[test]
fn stop_restore_compare() {
    let inputs = series(400);
    let mut whole = Harness::new(series_config());
    let expected = run(&mut whole, &inputs, 0);
    whole.flush();

    let (first, second) = inputs.split_at(inputs.len() / 2);
    let mut a = Harness::new(series_config());
    let mut got = run(&mut a, first, 0);
    a.flush();
    let mut b = Harness {
        p: RiskProcessor::new(series_config(), pseudonymizer()),
        state: a.state.clone(),
        offset: 0,
    };
    got.extend(run(&mut b, second, 0));
    b.flush();
    assert_eq!(got, expected);
    assert_eq!(b.state, whole.state, "same persisted state");

    // The series exercises what it should.
    let decisions: Vec<&RiskDecision> = expected.iter().flat_map(|r| r.as_ref().unwrap()).collect();
    let has = |id: &str| {
        decisions
            .iter()
            .any(|d| d.reasons.iter().any(|r| r.rule_id == id))
    };
    for id in [
        "invalid_document",
        "blacklist_payee",
        "external_payer",
        "external_unavailable",
        "amount_ratio",
        "amount_zscore",
        "new_payee",
        "velocity_count_10m",
        "velocity_sum_10m",
        "velocity_count_1h",
        "velocity_sum_1h",
        "night_amount",
    ] {
        assert!(has(id), "series never fired {id}");
    }
    for dec in [Decision::Approve, Decision::Review, Decision::Reject] {
        assert!(decisions.iter().any(|d| d.decision == dec), "{dec:?}");
    }
    // No document in clear in any reason.
    for d in &decisions {
        for r in &d.reasons {
            let digits_run = r
                .text
                .split(|c: char| !c.is_ascii_digit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(digits_run < 9, "{}", r.text);
        }
    }
}

#[test]
fn eviction_and_frequent_flushes_do_not_change_outputs() {
    let inputs = series(300);
    let mut plain = Harness::new(series_config());
    let expected = run(&mut plain, &inputs, 0);
    let mut c = series_config();
    c.max_cached_keys = 2;
    let mut tight = Harness::new(c);
    let got = run(&mut tight, &inputs, 3);
    assert_eq!(got, expected);
    assert!(tight.p.cached_payers() <= 2);
    assert!(tight.p.cached_blacklist_keys() <= 2);
}

#[test]
fn corrupt_payer_state_starts_a_fresh_history() {
    let mut h = Harness::new(Config::default());
    crate::StateWriter::put(
        &mut h.state,
        PAYERS_TABLE,
        pseudonymizer().pseudonym(PAYER_DIGITS).hex().as_bytes(),
        &[FORMAT_VERSION, 255, 255],
    );
    let out = h.decide(tx("t", PAYER, PAYEE, "10.00", noon()));
    assert_eq!(out.decision, Decision::Approve);
    h.flush();
    let bytes = crate::StateReader::get(
        &h.state,
        PAYERS_TABLE,
        pseudonymizer().pseudonym(PAYER_DIGITS).hex().as_bytes(),
    )
    .unwrap();
    let p: PayerState = store::decode_payer(&bytes).unwrap();
    assert_eq!((p.count, p.recent.len()), (1, 1));
}

#[test]
fn config_defaults_and_parsing() {
    let c = Config::default();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!((c.review_threshold, c.reject_threshold), (400, 700));
    assert_eq!(c.time_zone, "America/Sao_Paulo");
    assert_eq!(c.rules.velocity_10m.window, DurationMs(600_000));
    assert_eq!(c.rules.velocity_1h.window, DurationMs(3_600_000));
    assert_eq!((c.rules.night.start_hour, c.rules.night.end_hour), (22, 6));
    assert_eq!(c.rules.night.amount.0, d("1000.00"));
    assert!(!c.external.enabled());

    let parsed: Config = serde_json::from_value(serde_json::json!({
        "review_threshold": 300,
        "rules": {
            "velocity_10m": { "window": "5m", "count": 4, "sum": "2500.50" },
            "night": { "amount": 800 }
        },
        "external": { "url": "http://validator/v1", "timeout": "200ms", "jitter": "equal" }
    }))
    .unwrap();
    assert_eq!(parsed.review_threshold, 300);
    assert_eq!(parsed.reject_threshold, 700);
    assert_eq!(parsed.rules.velocity_10m.window, DurationMs(300_000));
    assert_eq!(parsed.rules.velocity_10m.count, 4);
    assert_eq!(parsed.rules.velocity_10m.sum.0, d("2500.50"));
    assert_eq!(parsed.rules.velocity_10m.count_weight, 150);
    assert_eq!(parsed.rules.night.amount.0, d("800"));
    assert_eq!(parsed.external.timeout, DurationMs(200));
    assert_eq!(parsed.external.jitter, resilience::Jitter::Equal);
    assert!(parsed.external.enabled());
    assert_eq!(parsed.validate(), Ok(()));

    let err =
        serde_json::from_value::<Config>(serde_json::json!({"rules": {"night": {"wieght": 1}}}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("wieght"), "{err}");
}

#[test]
fn config_validation_errors_name_the_key() {
    type Mutation = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|c| c.review_threshold = 0), "`review_threshold`"),
        (Box::new(|c| c.reject_threshold = 1001), "`reject_threshold`"),
        (Box::new(|c| c.reject_threshold = 300), "`reject_threshold` (300) must not be below `review_threshold` (400)"),
        (Box::new(|c| c.time_zone = "America/Sao_Paolo".into()), "`time_zone`"),
        (Box::new(|c| c.max_cached_keys = 0), "`max_cached_keys`"),
        (Box::new(|c| c.rules.amount_ratio.weight = -1), "`rules.amount_ratio.weight`"),
        (Box::new(|c| c.rules.amount_ratio.ratio = ConfigDecimal(d("1"))), "`rules.amount_ratio.ratio`"),
        (Box::new(|c| c.rules.amount_zscore.zscore = ConfigDecimal(d("0"))), "`rules.amount_zscore.zscore`"),
        (Box::new(|c| c.rules.amount_zscore.min_history = 1), "`rules.amount_zscore.min_history`"),
        (Box::new(|c| c.rules.velocity_10m.window = DurationMs(0)), "`rules.velocity_10m.window`"),
        (Box::new(|c| c.rules.velocity_10m.count = 0), "`rules.velocity_10m.count`"),
        (Box::new(|c| c.rules.velocity_1h.count = 5000), "`rules.velocity_1h.count` (5000) must not exceed `rules.velocity_1h.max_events` (1000)"),
        (Box::new(|c| c.rules.velocity_1h.sum_weight = 1500), "`rules.velocity_1h.sum_weight`"),
        (Box::new(|c| c.rules.velocity_1h.sum = ConfigDecimal(d("-1"))), "`rules.velocity_1h.sum`"),
        (Box::new(|c| c.rules.new_payee.max_known_payees = 0), "`rules.new_payee.max_known_payees`"),
        (Box::new(|c| c.rules.night.start_hour = 24), "`rules.night.start_hour`"),
        (Box::new(|c| c.rules.night.end_hour = 22), "`rules.night.end_hour`"),
        (Box::new(|c| c.external.url = Some("validator:80".into())), "`external.url`"),
        (Box::new(|c| c.external.budget = DurationMs(2_000)), "`external.budget`"),
        (Box::new(|c| c.external.timeout = DurationMs(0)), "`external.timeout`"),
        (Box::new(|c| c.external.backoff_max = DurationMs(10)), "`external.backoff_max`"),
        (Box::new(|c| c.external.failure_threshold = 0), "`external.failure_threshold`"),
        (Box::new(|c| c.external.half_open_probes = 0), "`external.half_open_probes`"),
        (Box::new(|c| c.external.flagged_weight = 2000), "`external.flagged_weight`"),
    ];
    for (mutate, key) in cases {
        let mut c = Config::default();
        mutate(&mut c);
        let err = c.validate().unwrap_err();
        assert!(err.contains(key), "expected {key} in: {err}");
    }
}

#[test]
fn external_config_builds_the_resilience_primitives() {
    let c = Config::default().external;
    let b = c.breaker();
    assert_eq!(b.config().failure_threshold, 5);
    assert_eq!(b.config().open_for, 30_000);
    let policy = c.retry_policy();
    assert_eq!((policy.call_timeout, policy.max_retries), (300, 2));
    let deadline = c.deadline(10_000);
    assert_eq!(deadline.at, 11_000);
    assert_eq!(c.call_plan(deadline).calls(), 0);
    let cache: resilience::TtlCache<String, ExternalVerdict> = c.cache();
    assert_eq!(cache.capacity(), 100_000);
}

fn arb_verdict() -> impl Strategy<Value = ExternalVerdict> {
    prop_oneof![
        Just(ExternalVerdict::NotConfigured),
        Just(ExternalVerdict::Clean),
        Just(ExternalVerdict::Flagged { reason: "x".into() }),
        Just(ExternalVerdict::Unavailable(UnavailableCause::Timeout)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn score_is_bounded_and_decision_matches_thresholds(
        review in 1i32..=1000,
        reject_extra in 0i32..=1000,
        weights in proptest::collection::vec(0i32..=1000, 8),
        flagged_rejects in any::<bool>(),
        txs in proptest::collection::vec(
            (0usize..4, 0usize..3, 1i64..2_000_000, 0i64..900_000, arb_verdict(), arb_verdict(), any::<bool>()),
            1..40,
        ),
    ) {
        let mut c = Config::default();
        c.review_threshold = review;
        c.reject_threshold = (review + reject_extra).min(1000);
        c.rules.amount_ratio.weight = weights[0];
        c.rules.amount_zscore.weight = weights[1];
        c.rules.velocity_10m.count_weight = weights[2];
        c.rules.velocity_10m.count = 3;
        c.rules.velocity_10m.sum_weight = weights[3];
        c.rules.velocity_1h.count_weight = weights[4];
        c.rules.velocity_1h.sum_weight = weights[5];
        c.rules.new_payee.weight = weights[6];
        c.rules.new_payee.min_history = 1;
        c.rules.night.weight = weights[7];
        c.external.flagged_rejects = flagged_rejects;
        let payers = [PAYER, "111.444.777-35", "123.456.789-09", "123.456.789-10"];
        let payees = [PAYEE, OTHER_PAYEE, "00.000.000/0000-00"];
        let mut h = Harness::new(c.clone());
        let mut t = at("2024-06-03T22:00:00Z");
        for (i, (payer, payee, cents, dt, vp, ve, blacklist)) in txs.into_iter().enumerate() {
            t += dt;
            if blacklist {
                h.feed(listed(payees[payee], "x"));
            }
            let amount = Decimal::new(cents, 2).to_string();
            let out = h.decide_with(
                tx(&format!("p{i}"), payers[payer], payees[payee], &amount, t),
                ExternalValidation { payer: vp.clone(), payee: ve.clone() },
            );
            prop_assert!((0..=1000).contains(&out.score));
            prop_assert_eq!(out.decision, decision_for(out.score, c.review_threshold, c.reject_threshold));
            let hard = out.reasons.iter().any(|r| match r.rule_id.as_str() {
                "invalid_document" | "blacklist_payer" | "blacklist_payee" => true,
                "external_payer" | "external_payee" => flagged_rejects,
                _ => false,
            });
            let sum: i32 = out.reasons.iter().map(|r| r.contribution).sum();
            prop_assert_eq!(out.score, if hard { 1000 } else { sum.min(1000) });
            let payer_valid = documents::validate(payers[payer]).is_ok();
            let payee_valid = documents::validate(payees[payee]).is_ok();
            let unavailable = (payer_valid && matches!(vp, ExternalVerdict::Unavailable(_)))
                || (payee_valid && matches!(ve, ExternalVerdict::Unavailable(_)));
            prop_assert_eq!(out.degraded, unavailable);
            if i % 7 == 6 {
                h.flush();
            }
        }
    }
}

/// A transaction delivered twice (a duplicate at the source) is decided once and counts once in
/// the payer's velocity; after a restart the id is still known (it is in the flushed state).
#[test]
fn a_duplicate_transaction_id_is_dropped_and_counted_once() {
    let mut c = quiet();
    c.rules.velocity_10m.count = 2;
    c.rules.velocity_10m.count_weight = 150;
    let t0 = noon();
    let mut h = Harness::new(c.clone());
    assert!(h
        .decide(tx("a", PAYER, PAYEE, "1.00", t0))
        .reasons
        .is_empty());
    let again = RiskInput::Transaction {
        tx: tx("a", PAYER, PAYEE, "1.00", t0),
        validation: ExternalValidation::not_configured(),
    };
    assert_eq!(h.input(again.clone(), t0 + 10).unwrap(), vec![]);
    assert_eq!(h.p.duplicates_skipped(), 1);
    h.flush();
    let mut fresh = Harness {
        p: RiskProcessor::new(c, pseudonymizer()),
        state: h.state.clone(),
        offset: 10,
    };
    assert_eq!(fresh.input(again, t0 + 20).unwrap(), vec![]);
    // The second distinct transaction is the second in the window, not the third.
    let out = fresh.decide(tx("b", PAYER, PAYEE, "1.00", t0 + MIN));
    assert_eq!(out.reasons.len(), 1, "{:?}", out.reasons);
    assert!(
        out.reasons[0].text.starts_with("2 transactions"),
        "{:?}",
        out.reasons
    );
}

/// Every byte the state holds, keys and values, as lossy text.
fn state_text(state: &MemoryState) -> String {
    let mut all = String::new();
    for table in [BLACKLIST_TABLE, PAYERS_TABLE, views::RISK_DECISIONS] {
        for (k, v) in state.table(table) {
            all.push_str(&String::from_utf8_lossy(k));
            all.push('|');
            all.push_str(&String::from_utf8_lossy(v));
            all.push('\n');
        }
    }
    all
}

#[test]
fn no_clear_document_reaches_the_state() {
    let mut c = Config::default();
    c.rules.new_payee.min_history = 1;
    let mut h = Harness::new(c);
    // A blacklist reason that names the document itself.
    h.feed(listed(
        PAYEE,
        "conta laranja 11.222.333/0001-81, ver 11222333000181",
    ));
    for (i, t) in [noon(), noon() + MIN, noon() + 2 * MIN]
        .into_iter()
        .enumerate()
    {
        h.decide(tx(&format!("t{i}"), PAYER, OTHER_PAYEE, "10.00", t));
    }
    let out = h.decide(tx("t9", PAYER, PAYEE, "10.00", noon() + 3 * MIN));
    assert_eq!(out.reasons[0].rule_id, "blacklist_payee");
    h.flush();
    let all = state_text(&h.state);
    assert_eq!(h.state.table(PAYERS_TABLE).len(), 1);
    assert_eq!(h.state.table(BLACKLIST_TABLE).len(), 1);
    for doc in [
        PAYER,
        PAYER_DIGITS,
        PAYEE,
        PAYEE_DIGITS,
        OTHER_PAYEE,
        "12345678000195",
    ] {
        assert!(!all.contains(doc), "{doc} in the state:\n{all}");
    }
    // A fresh instance over the same state and key still blocks it.
    let mut fresh = Harness {
        p: RiskProcessor::new(Config::default(), pseudonymizer()),
        state: h.state.clone(),
        offset: 0,
    };
    let out = fresh.decide(tx("t10", PAYER, PAYEE_DIGITS, "10.00", noon() + 4 * MIN));
    assert_eq!(out.reasons[0].rule_id, "blacklist_payee");
    // Under another key the entries are not found.
    let mut other = Harness {
        p: RiskProcessor::new(
            Config::default(),
            Pseudonymizer::new(b"an entirely different key").unwrap(),
        ),
        state: h.state.clone(),
        offset: 0,
    };
    let out = other.decide(tx("t11", PAYER, PAYEE_DIGITS, "10.00", noon() + 5 * MIN));
    assert!(out.reasons.is_empty(), "{out:?}");
}

#[test]
fn rotation_rekeys_entries_found_under_the_previous_key() {
    let mut c = Config::default();
    c.rules.new_payee.min_history = 1;
    c.rules.new_payee.amount = ConfigDecimal(d("1"));
    let mut h = Harness::new(c.clone());
    h.feed(listed(PAYEE, "x"));
    h.decide(tx("t1", PAYER, OTHER_PAYEE, "10.00", noon()));
    h.flush();
    let old_rows: Vec<Vec<u8>> = h
        .state
        .table(PAYERS_TABLE)
        .into_iter()
        .chain(h.state.table(BLACKLIST_TABLE))
        .map(|(k, _)| k.to_vec())
        .collect();

    let new_key: &[u8] = b"the new document key, rotated";
    let rotating = Pseudonymizer::new(new_key)
        .unwrap()
        .with_previous(TEST_KEY)
        .unwrap();
    let mut r = Harness {
        p: RiskProcessor::new(c.clone(), rotating),
        state: h.state.clone(),
        offset: 0,
    };
    // The blacklist and the payer's history (count 1, payee known) are found under the old key.
    let out = r.decide(tx("t2", PAYER, PAYEE, "10.00", noon() + MIN));
    assert_eq!(out.reasons[0].rule_id, "blacklist_payee");
    let out = r.decide(tx("t3", PAYER, OTHER_PAYEE, "10.00", noon() + 2 * MIN));
    assert!(
        !out.reasons.iter().any(|x| x.rule_id == "new_payee"),
        "{out:?}"
    );
    r.flush();
    let keys: Vec<Vec<u8>> = r
        .state
        .table(PAYERS_TABLE)
        .into_iter()
        .chain(r.state.table(BLACKLIST_TABLE))
        .map(|(k, _)| k.to_vec())
        .collect();
    let new = Pseudonymizer::new(new_key).unwrap();
    assert_eq!(
        keys,
        vec![
            new.pseudonym(PAYER).hex().into_bytes(),
            new.pseudonym(PAYEE).hex().into_bytes()
        ]
    );
    assert!(
        old_rows.iter().all(|k| !keys.contains(k)),
        "old keys deleted"
    );
    let p: PayerState = store::decode_payer(r.state.table(PAYERS_TABLE)[0].1).unwrap();
    assert_eq!(p.count, 2, "history carried over");
    assert_eq!(p.known_payees, [new.pseudonym(OTHER_PAYEE).short()]);

    // Without the previous key, the new key alone finds everything.
    let mut after = Harness {
        p: RiskProcessor::new(c, new),
        state: r.state.clone(),
        offset: 0,
    };
    let out = after.decide(tx("t4", PAYER, PAYEE, "10.00", noon() + 3 * MIN));
    assert_eq!(out.reasons[0].rule_id, "blacklist_payee");
}
