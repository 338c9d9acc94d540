//! Price change: alert when a symbol's price moves at least `threshold_pct` inside a trailing
//! event-time window.
