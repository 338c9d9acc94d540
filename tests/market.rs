//! Market scenarios on the real broker: price change inside and just outside the 5-minute
//! window, and one below-average event per crossing.

mod common;

use common::*;
use fluxo_processors::events::{AssetPrice, BelowAverageEvent, CrossingKind, PriceAlert};
use rust_decimal::Decimal;
use std::time::Duration;

const T0: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

fn quote(symbol: &str, id: &str, price: &str, at: i64) -> AssetPrice {
    AssetPrice {
        event_id: id.into(),
        symbol: symbol.into(),
        price: price.parse().unwrap(),
        currency: "BRL".into(),
        source: "b3".into(),
        event_time: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rise_within_five_minutes_alerts_and_one_dip_gives_one_event() {
    let _serial = serial();
    let env = Env::new(
        &["price-change", "below-average"],
        "[processors.below-average.params]\nmin_samples = 5\n",
    );
    env.create_topics();
    let prices = env.topic("asset-prices");
    let mut p = TestProducer::new();
    let mut child = env.start();
    let m = |minutes: i64, seconds: i64| T0 + (minutes * 60 + seconds) * 1_000;

    let mut quotes = vec![
        // 100.00 then 110.01 four minutes fifty-nine seconds later: an alert.
        quote("INSIDE", "i-1", "100.00", m(0, 0)),
        quote("INSIDE", "i-2", "110.01", m(4, 59)),
        quote("INSIDE", "i-3", "110.01", m(6, 0)),
        // The same rise over five minutes and one second: no alert.
        quote("OUTSIDE", "o-1", "100.00", m(0, 0)),
        quote("OUTSIDE", "o-2", "110.01", m(5, 1)),
        quote("OUTSIDE", "o-3", "110.01", m(6, 0)),
    ];
    // Ten quotes at 100, then a dip below the average and more quotes below it.
    for i in 0..10 {
        quotes.push(quote("DIP", &format!("d-{i}"), "100.00", m(0, i * 10)));
    }
    for (i, price) in ["90.00", "89.00", "88.50", "87.00", "86.00"]
        .iter()
        .enumerate()
    {
        quotes.push(quote(
            "DIP",
            &format!("d-below-{i}"),
            price,
            m(2, i as i64 * 10),
        ));
    }
    quotes.push(quote("DIP", "d-late-tail", "85.00", m(4, 0)));
    for q in &quotes {
        p.send(&prices, &q.symbol, q).await;
    }
    env.wait_checkpointed("price-change", quotes.len() as u64, Duration::from_secs(60));
    env.wait_checkpointed(
        "below-average",
        quotes.len() as u64,
        Duration::from_secs(60),
    );

    let alerts: Vec<PriceAlert> = read_topic(
        &env.topic("price-alerts"),
        usize::MAX,
        Duration::from_secs(3),
    )
    .into_iter()
    .map(|r| decode::<PriceAlert>(&r.payload.unwrap()))
    .collect();
    let inside: Vec<_> = alerts.iter().filter(|a| a.symbol == "INSIDE").collect();
    assert_eq!(inside.len(), 1, "{alerts:?}");
    assert_eq!(inside[0].from_price, Decimal::new(10_000, 2));
    assert_eq!(inside[0].to_price, Decimal::new(11_001, 2));
    assert_eq!(inside[0].from_event_id, "i-1");
    assert_eq!(inside[0].to_event_id, "i-2");
    assert_eq!(inside[0].change_pct, "10.0100".parse::<Decimal>().unwrap());
    assert!(alerts.iter().all(|a| a.symbol != "OUTSIDE"), "{alerts:?}");

    let events: Vec<BelowAverageEvent> = read_topic(
        &env.topic("below-average-events"),
        usize::MAX,
        Duration::from_secs(3),
    )
    .into_iter()
    .map(|r| decode::<BelowAverageEvent>(&r.payload.unwrap()))
    .filter(|e| e.symbol == "DIP")
    .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, CrossingKind::Below);
    assert_eq!(events[0].quote_event_id, "d-below-0");
    assert_eq!(events[0].average, Decimal::new(100, 0));
    assert!(stop(&mut child).success());
}
