package fluxo.peers;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * The price-change rule exactly as fluxo's processors/src/price_change.rs runs it with the
 * default parameters of topology.toml (direction rise, threshold 10%, window 5 min, cooldown =
 * window, allowed_lateness 30 s):
 *
 * <ul>
 *   <li>per symbol, quotes are held back until the symbol's own event time (its newest quote)
 *       has moved {@code allowed_lateness} past them, and released in event-time order (equal
 *       times in arrival order); a quote older than that per-symbol watermark is late and
 *       dropped (fluxo dead-letters it);
 *   <li>each released quote enters a monotonic deque of the lows of {@code [t - window, t]};
 *       an alert fires when the quote is at or above the window's low times 1.1 (rounded up to
 *       8 places) and is not the low itself;
 *   <li>within the cooldown after an alert, a new one needs a change of at least the previous
 *       change + the threshold;
 *   <li>{@link #releaseAll} is fluxo's idle / end-of-input release: everything held is released
 *       and the watermark stands at the newest quote.
 * </ul>
 * No deduplication of quotes (fluxo has none for prices).
 */
public final class PriceChange {
    /** Event-time window of the trailing low. */
    public static final long WINDOW_MS = 5 * 60_000;
    /** How far behind the symbol's newest quote a quote may arrive and still count. */
    public static final long LATENESS_MS = 30_000;
    /** Cooldown after an alert (fluxo's default: the window). */
    public static final long COOLDOWN_MS = WINDOW_MS;
    /** Threshold in percent, at fluxo's percent scale (4). */
    public static final BigDecimal THRESHOLD = new BigDecimal("10.0000");
    private static final BigDecimal RISE_FACTOR = new BigDecimal("1.1");
    private static final BigDecimal HUNDRED = BigDecimal.valueOf(100);

    private PriceChange() {}

    /** A decoded AssetPrice. */
    public record Input(String eventId, String symbol, BigDecimal price, long eventTime) {}

    /** One quote held or in the window. */
    public static final class Quote implements Serializable {
        private static final long serialVersionUID = 1L;
        /** Event time, epoch ms. */
        public long time;
        /** Price at scale 8. */
        public BigDecimal price;
        /** The quote's event id. */
        public String id;

        /** For serializers. */
        public Quote() {}

        Quote(long time, BigDecimal price, String id) {
            this.time = time;
            this.price = price;
            this.id = id;
        }
    }

    /** Per-symbol state: the reorder buffer, the deque of lows and the last alert. */
    public static final class State implements Serializable {
        private static final long serialVersionUID = 1L;
        /** Whether any quote was seen (maxTime is meaningful). */
        public boolean hasMax;
        /** Newest event time seen (raised by {@link #releaseAll}). */
        public long maxTime;
        /** Wall-clock ms of the newest arrival (for the idle release). */
        public long arrived;
        /** Held quotes, in event-time order. */
        public ArrayDeque<Quote> pending = new ArrayDeque<>();
        /** Monotonic deque of the window's lows (front = the low). */
        public ArrayDeque<Quote> lows = new ArrayDeque<>();
        /** Whether a rise alert was emitted (lastTime, lastChangeAbs meaningful). */
        public boolean hasLast;
        /** Event time of the last alert's quote. */
        public long lastTime;
        /** Absolute change of the last alert, percent. */
        public BigDecimal lastChangeAbs = BigDecimal.ZERO;

        /** Whether quotes are held. */
        public boolean holding() {
            return !pending.isEmpty();
        }
    }

    /**
     * Processes one quote: returns false when it is late (dropped), else adds the alerts of the
     * quotes it releases to {@code out}.
     */
    public static boolean process(State s, Input in, long nowMs, List<String> out) {
        if (in.price().signum() <= 0 || in.price().compareTo(new BigDecimal("1000000000000")) >= 0) {
            return false; // fluxo: invalid_price
        }
        if (s.hasMax && in.eventTime() < s.maxTime - LATENESS_MS) {
            return false;
        }
        s.arrived = nowMs;
        Quote q = new Quote(in.eventTime(), in.price().setScale(8), in.eventId());
        if (s.pending.isEmpty() || s.pending.peekLast().time <= q.time) {
            s.pending.addLast(q);
        } else {
            // out of order: insert after every held quote at or before its time
            ArrayDeque<Quote> after = new ArrayDeque<>();
            while (!s.pending.isEmpty() && s.pending.peekLast().time > q.time) {
                after.addFirst(s.pending.pollLast());
            }
            s.pending.addLast(q);
            s.pending.addAll(after);
        }
        s.maxTime = s.hasMax ? Math.max(s.maxTime, q.time) : q.time;
        s.hasMax = true;
        drain(s, in.symbol(), out);
        return true;
    }

    /** Releases everything held (fluxo's idle or end-of-input release). */
    public static void releaseAll(State s, String symbol, List<String> out) {
        if (s.hasMax) {
            s.maxTime = s.maxTime + LATENESS_MS;
        }
        drain(s, symbol, out);
    }

    private static void drain(State s, String symbol, List<String> out) {
        long wm = s.maxTime - LATENESS_MS;
        while (!s.pending.isEmpty() && s.pending.peekFirst().time <= wm) {
            release(s, symbol, s.pending.pollFirst(), out);
        }
    }

    private static void release(State s, String symbol, Quote q, List<String> out) {
        long start = q.time - WINDOW_MS;
        ArrayDeque<Quote> lows = s.lows;
        while (!lows.isEmpty() && lows.peekFirst().time < start) {
            lows.pollFirst();
        }
        while (!lows.isEmpty() && lows.peekLast().price.compareTo(q.price) >= 0) {
            lows.pollLast();
        }
        lows.addLast(q);
        if (lows.size() < 2) {
            return;
        }
        Quote from = lows.peekFirst();
        BigDecimal level = from.price.multiply(RISE_FACTOR).setScale(8, RoundingMode.CEILING);
        if (q.price.compareTo(level) < 0) {
            return;
        }
        if (s.hasLast && q.time - s.lastTime < COOLDOWN_MS) {
            BigDecimal moved = q.price.subtract(from.price).multiply(HUNDRED);
            BigDecimal needed = s.lastChangeAbs.add(THRESHOLD).multiply(from.price);
            if (moved.compareTo(needed) < 0) {
                return;
            }
        }
        BigDecimal change = q.price.subtract(from.price).multiply(HUNDRED)
                .divide(from.price, 4, RoundingMode.HALF_UP);
        s.hasLast = true;
        s.lastTime = q.time;
        s.lastChangeAbs = change.abs();
        out.add(new Json()
                .str("alert_id", q.id + "/rise")
                .str("symbol", symbol)
                .str("direction", "RISE")
                .str("from_price", from.price.toPlainString())
                .num("from_time", from.time)
                .str("from_event_id", from.id)
                .str("to_price", q.price.toPlainString())
                .num("to_time", q.time)
                .str("to_event_id", q.id)
                .str("change_pct", change.toPlainString())
                .str("threshold_pct", THRESHOLD.toPlainString())
                .num("window_start", start)
                .num("window_end", q.time)
                .toString());
    }

    /** The state as bytes (for Kafka Streams' RocksDB store). */
    public static byte[] encode(State s) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(64 + 48 * (s.pending.size() + s.lows.size()));
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeBoolean(s.hasMax);
            out.writeLong(s.maxTime);
            out.writeLong(s.arrived);
            out.writeBoolean(s.hasLast);
            out.writeLong(s.lastTime);
            writeDecimal(out, s.lastChangeAbs);
            writeQuotes(out, s.pending);
            writeQuotes(out, s.lows);
            return bytes.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The state from {@link #encode} bytes; null gives a fresh state. */
    public static State decode(byte[] bytes) {
        State s = new State();
        if (bytes == null) {
            return s;
        }
        try {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
            s.hasMax = in.readBoolean();
            s.maxTime = in.readLong();
            s.arrived = in.readLong();
            s.hasLast = in.readBoolean();
            s.lastTime = in.readLong();
            s.lastChangeAbs = readDecimal(in);
            readQuotes(in, s.pending);
            readQuotes(in, s.lows);
            return s;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void writeQuotes(DataOutputStream out, ArrayDeque<Quote> qs) throws IOException {
        out.writeInt(qs.size());
        for (Quote q : qs) {
            out.writeLong(q.time);
            writeDecimal(out, q.price);
            out.writeUTF(q.id);
        }
    }

    private static void readQuotes(DataInputStream in, ArrayDeque<Quote> qs) throws IOException {
        int n = in.readInt();
        for (int i = 0; i < n; i++) {
            long time = in.readLong();
            BigDecimal price = readDecimal(in);
            qs.addLast(new Quote(time, price, in.readUTF()));
        }
    }

    static void writeDecimal(DataOutputStream out, BigDecimal d) throws IOException {
        byte[] unscaled = d.unscaledValue().toByteArray();
        out.writeByte(d.scale());
        out.writeByte(unscaled.length);
        out.write(unscaled);
    }

    static BigDecimal readDecimal(DataInputStream in) throws IOException {
        int scale = in.readByte();
        byte[] unscaled = new byte[in.readByte()];
        in.readFully(unscaled);
        return new BigDecimal(new BigInteger(unscaled), scale);
    }
}
