package fluxo.peers;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneId;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * Daily consolidation as fluxo's processors/src/consolidation.rs runs it with its defaults
 * (America/Sao_Paulo business days, currency BRL, dedup_retention 35 days):
 *
 * <ul>
 *   <li>invalid entries are dropped (fluxo dead-letters them): entry id missing, blank, not a
 *       UUID or the nil UUID; account blank or with a NUL; kind not DEBIT / CREDIT; amount not
 *       &gt; 0, more than 2 places or beyond decimal(18, 2); currency not BRL;
 *   <li>per account, an entry whose business date is before the dedup horizon (the account's
 *       latest business date minus 35 days, never moving back) is too late and dropped;
 *   <li>an entry id already counted for the account (UUIDs compared as values, so case does
 *       not matter) is skipped; ids of days below the horizon are forgotten;
 *   <li>otherwise the day's credits or debits grow, net = credits - debits, entry_count + 1,
 *       last_entry_at = the newest occurred_at, and the day's balance is emitted.
 * </ul>
 * fluxo keeps entry ids per state store (all the accounts of its partitions); the peers keep
 * them per account (keyed state). Both count a duplicate once as long as one entry id belongs
 * to one account, which is what the ledger guarantees.
 */
public final class Consolidation {
    /** The business-day time zone. */
    public static final ZoneId ZONE = ZoneId.of("America/Sao_Paulo");
    /** dedup_retention in days. */
    public static final int RETENTION_DAYS = 35;
    private static final BigDecimal MAX_MONEY = new BigDecimal("9999999999999999.99");
    private static final Pattern UUID = Pattern.compile(
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");
    private static final String NIL = "00000000-0000-0000-0000-000000000000";

    private Consolidation() {}

    /** A decoded LedgerEntry. */
    public record Entry(String entryId, String accountId, String kind, BigDecimal amount,
                        String currency, long occurredAt) {}

    /** A valid entry: its normalized id, credit or debit, amount at scale 2, business date. */
    public record Valid(String id, boolean credit, BigDecimal amount, int date) {}

    /** The validated entry, or null when fluxo would dead-letter it. */
    public static Valid check(Entry e) {
        String id = e.entryId() == null ? "" : e.entryId().strip();
        if (!UUID.matcher(id).matches()) {
            return null;
        }
        id = id.toLowerCase(Locale.ROOT);
        if (id.equals(NIL)) {
            return null;
        }
        if (e.accountId().isBlank() || e.accountId().indexOf('\0') >= 0) {
            return null;
        }
        boolean credit;
        switch (e.kind()) {
            case "CREDIT" -> credit = true;
            case "DEBIT" -> credit = false;
            default -> {
                return null;
            }
        }
        BigDecimal amount = e.amount();
        if (amount.signum() <= 0 || amount.stripTrailingZeros().scale() > 2
                || amount.compareTo(MAX_MONEY) > 0) {
            return null;
        }
        if (!"BRL".equals(e.currency())) {
            return null;
        }
        int date;
        try {
            date = (int) Instant.ofEpochMilli(e.occurredAt()).atZone(ZONE).toLocalDate().toEpochDay();
        } catch (DateTimeException ex) {
            return null;
        }
        return new Valid(id, credit, amount.setScale(2), date);
    }

    /** An account's dedup horizon. */
    public static final class Horizon implements Serializable {
        private static final long serialVersionUID = 1L;
        /** Latest business date seen (epoch days). */
        public int maxDate;
        /** Oldest business date still accepted. */
        public int floor;

        /** For serializers. */
        public Horizon() {}

        /** A horizon. */
        public Horizon(int maxDate, int floor) {
            this.maxDate = maxDate;
            this.floor = floor;
        }
    }

    /** The horizon after an entry of {@code date}, or null when the entry is too late. */
    public static Horizon plan(Horizon h, int date) {
        if (h == null) {
            return new Horizon(date, date - RETENTION_DAYS);
        }
        int max = Math.max(h.maxDate, date);
        int floor = Math.max(h.floor, max - RETENTION_DAYS);
        return date < floor ? null : new Horizon(max, floor);
    }

    /** Whether an id counted on {@code idDate} is still remembered under horizon {@code h}. */
    public static boolean remembered(Horizon h, Integer idDate) {
        return idDate != null && h != null && idDate >= h.floor;
    }

    /** One account's balance of one business day. */
    public static final class Balance implements Serializable {
        private static final long serialVersionUID = 1L;
        /** Total of credits. */
        public BigDecimal credits = BigDecimal.ZERO.setScale(2);
        /** Total of debits. */
        public BigDecimal debits = BigDecimal.ZERO.setScale(2);
        /** Entries counted. */
        public long count;
        /** Newest occurred_at. */
        public long lastEntryAt;

        /** Adds an entry; false when a total would exceed decimal(18, 2) (fluxo: balance_overflow). */
        public boolean add(Valid v, long occurredAt) {
            BigDecimal total = (v.credit() ? credits : debits).add(v.amount());
            if (total.compareTo(MAX_MONEY) > 0) {
                return false;
            }
            if (v.credit()) {
                credits = total;
            } else {
                debits = total;
            }
            lastEntryAt = count == 0 ? occurredAt : Math.max(lastEntryAt, occurredAt);
            count++;
            return true;
        }

        /** The output key, {@code account/YYYY-MM-DD} as fluxo's. */
        public static String key(String account, int date) {
            return account + "/" + LocalDate.ofEpochDay(date);
        }

        /** The DailyBalance as JSON. */
        public String json(String account, int date, long updatedAt) {
            return new Json()
                    .str("account_id", account)
                    .str("business_date", LocalDate.ofEpochDay(date).toString())
                    .str("total_credits", credits.toPlainString())
                    .str("total_debits", debits.toPlainString())
                    .str("net", credits.subtract(debits).toPlainString())
                    .num("entry_count", count)
                    .num("last_entry_at", lastEntryAt)
                    .num("updated_at", updatedAt)
                    .toString();
        }

        /** The balance as bytes (for Kafka Streams' RocksDB store). */
        public byte[] encode() {
            try {
                ByteArrayOutputStream bytes = new ByteArrayOutputStream(48);
                DataOutputStream out = new DataOutputStream(bytes);
                PriceChange.writeDecimal(out, credits);
                PriceChange.writeDecimal(out, debits);
                out.writeLong(count);
                out.writeLong(lastEntryAt);
                return bytes.toByteArray();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        /** A balance from {@link #encode} bytes; null gives an empty day. */
        public static Balance decode(byte[] bytes) {
            Balance b = new Balance();
            if (bytes == null) {
                return b;
            }
            try {
                DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
                b.credits = PriceChange.readDecimal(in);
                b.debits = PriceChange.readDecimal(in);
                b.count = in.readLong();
                b.lastEntryAt = in.readLong();
                return b;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
