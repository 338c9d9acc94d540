package fluxo.peers;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * Decodes fluxo's Confluent-framed Avro input records (magic byte 0 + 4-byte schema id + Avro
 * binary) with fluxo's own schemas. The schema id is skipped: every record of these topics is
 * written with the one registered version, as fluxo's producer does.
 */
public final class Avro {
    /** Confluent framing: magic byte and a 4-byte big-endian schema id. */
    public static final int FRAME = 5;

    private final GenericDatumReader<GenericRecord> reader;
    private BinaryDecoder decoder;
    private GenericRecord reuse;

    /** A decoder for the schema in {@code schemas/<file>} on the classpath. */
    public Avro(String file) {
        this.reader = new GenericDatumReader<>(schema(file));
    }

    /** Parses {@code schemas/<file>} from the classpath (fluxo's schemas/ directory). */
    public static Schema schema(String file) {
        try (InputStream in = Avro.class.getResourceAsStream("/schemas/" + file)) {
            if (in == null) {
                throw new IllegalStateException("no schemas/" + file + " on the classpath");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The record in a framed payload, or null when the payload is not framed Avro. */
    public GenericRecord decode(byte[] payload) {
        if (payload == null || payload.length < FRAME || payload[0] != 0) {
            return null;
        }
        try {
            decoder = DecoderFactory.get().binaryDecoder(payload, FRAME, payload.length - FRAME, decoder);
            reuse = reader.read(reuse, decoder);
            return reuse;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** A decimal field (Avro bytes, two's complement big-endian) at the given scale. */
    public static BigDecimal decimal(Object bytes, int scale) {
        ByteBuffer b = ((ByteBuffer) bytes).duplicate();
        byte[] raw = new byte[b.remaining()];
        b.get(raw);
        return new BigDecimal(new BigInteger(raw), scale);
    }

    /** A string field (Avro's Utf8 or String), null stays null. */
    public static String str(Object v) {
        return v == null ? null : v.toString();
    }

    /** Decodes AssetPrice records into {@link PriceChange.Input}s. */
    public static final class Prices {
        private final Avro avro = new Avro("asset_price.avsc");

        /** The quote in a framed AssetPrice, or null when it does not decode. */
        public PriceChange.Input decode(byte[] payload) {
            GenericRecord r = avro.decode(payload);
            if (r == null) {
                return null;
            }
            return new PriceChange.Input(
                    str(r.get("event_id")),
                    str(r.get("symbol")),
                    decimal(r.get("price"), 8),
                    ((Number) r.get("event_time")).longValue());
        }
    }

    /** Decodes LedgerEntry records into {@link Consolidation.Entry}s. */
    public static final class Ledger {
        private final Avro avro = new Avro("ledger_entry.avsc");

        /** The entry in a framed LedgerEntry, or null when it does not decode. */
        public Consolidation.Entry decode(byte[] payload) {
            GenericRecord r = avro.decode(payload);
            if (r == null) {
                return null;
            }
            return new Consolidation.Entry(
                    str(r.get("entry_id")),
                    str(r.get("account_id")),
                    str(r.get("kind")),
                    decimal(r.get("amount"), 2),
                    str(r.get("currency")),
                    ((Number) r.get("occurred_at")).longValue());
        }
    }
}
