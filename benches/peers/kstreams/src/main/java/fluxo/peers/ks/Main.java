package fluxo.peers.ks;

import fluxo.peers.Avro;
import fluxo.peers.Consolidation;
import fluxo.peers.Meter;
import fluxo.peers.PriceChange;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer: price change or daily consolidation with the Processor API and
 * persistent (RocksDB) key-value stores, their changelogs and the default record cache.
 *
 * <pre>
 * Main --rule price-change|consolidation --bootstrap HOST:PORT --input TOPIC --output TOPIC
 *      --app-id ID --state-dir DIR [--guarantee exactly_once_v2|at_least_once]
 *      [--idle-ms 30000] [--expect N]
 * </pre>
 * Under exactly_once_v2 the outputs, changelogs and offsets of a commit (every 100 ms, Kafka
 * Streams' default under EOS) form one transaction; under at_least_once the default commit
 * interval (30 s) applies.
 *
 * <p>Every output caused by an input record carries a {@code fluxo-id} header naming that input
 * ({@code kafka-streams:<topic>/<partition>/<offset>/<i>}, fluxo's own format), which the latency
 * tap of benches/loadtest.rs joins on: measurement plumbing, one small header per output.
 * Outputs of the idle punctuation have no input and carry none.
 */
public final class Main {
    static final String SYMBOLS = "price-change-symbols";
    static final String BALANCES = "consolidation-balances";
    static final String IDS = "consolidation-entry-ids";
    static final String HORIZONS = "consolidation-horizons";

    private Main() {}

    /** Entry point. */
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = args(argv);
        String rule = need(a, "rule");
        Meter.expect(Long.parseLong(a.getOrDefault("expect", "0")));
        long idleMs = Long.parseLong(a.getOrDefault("idle-ms", String.valueOf(PriceChange.LATENESS_MS)));
        Topology t = new Topology();
        t.addSource("input", Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(), need(a, "input"));
        switch (rule) {
            case "price-change" -> {
                t.addProcessor("rule", () -> new PriceChangeProcessor(idleMs), "input");
                t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(SYMBOLS),
                        Serdes.String(), Serdes.ByteArray()), "rule");
            }
            case "consolidation" -> {
                t.addProcessor("rule", ConsolidationProcessor::new, "input");
                t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(BALANCES),
                        Serdes.String(), Serdes.ByteArray()), "rule");
                t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(IDS),
                        Serdes.String(), Serdes.Integer()), "rule");
                t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(HORIZONS),
                        Serdes.String(), Serdes.ByteArray()), "rule");
            }
            default -> throw new IllegalArgumentException("--rule " + rule + ": price-change or consolidation");
        }
        t.addSink("output", need(a, "output"), Serdes.String().serializer(), Serdes.String().serializer(), "rule");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(a, "app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, need(a, "state-dir"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.getOrDefault("guarantee", StreamsConfig.EXACTLY_ONCE_V2));
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        KafkaStreams streams = new KafkaStreams(t, p);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            System.err.println("peers: kafka streams " + before + " -> " + now);
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
    }

    /** Price change per symbol; a wall-clock punctuation releases quiet symbols' quotes. */
    static final class PriceChangeProcessor implements Processor<byte[], byte[], String, String> {
        private final long idleMs;
        private final Avro.Prices avro = new Avro.Prices();
        private final List<String> alerts = new ArrayList<>();
        private ProcessorContext<String, String> ctx;
        private KeyValueStore<String, byte[]> symbols;

        PriceChangeProcessor(long idleMs) {
            this.idleMs = idleMs;
        }

        @Override
        public void init(ProcessorContext<String, String> context) {
            ctx = context;
            symbols = context.getStateStore(SYMBOLS);
            // fluxo's wall-clock tick: once a second, release what quiet symbols hold
            context.schedule(Duration.ofSeconds(1), PunctuationType.WALL_CLOCK_TIME, this::releaseIdle);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            Meter.tick();
            PriceChange.Input in = avro.decode(record.value());
            if (in == null) {
                return;
            }
            PriceChange.State s = PriceChange.decode(symbols.get(in.symbol()));
            if (!PriceChange.process(s, in, System.currentTimeMillis(), alerts)) {
                return; // late or invalid: fluxo dead-letters it
            }
            symbols.put(in.symbol(), PriceChange.encode(s));
            emit(in.symbol(), record.timestamp(), ctx.recordMetadata().orElse(null));
        }

        private void releaseIdle(long now) {
            List<KeyValue<String, byte[]>> held = new ArrayList<>();
            try (KeyValueIterator<String, byte[]> it = symbols.all()) {
                while (it.hasNext()) {
                    held.add(it.next());
                }
            }
            for (KeyValue<String, byte[]> kv : held) {
                PriceChange.State s = PriceChange.decode(kv.value);
                if (s.holding() && s.arrived <= now - idleMs) {
                    PriceChange.releaseAll(s, kv.key, alerts);
                    symbols.put(kv.key, PriceChange.encode(s));
                    emit(kv.key, now, null);
                }
            }
        }

        private void emit(String symbol, long timestamp, RecordMetadata origin) {
            for (int i = 0; i < alerts.size(); i++) {
                ctx.forward(new Record<>(symbol, alerts.get(i), timestamp, originHeader(origin, i)));
            }
            alerts.clear();
        }
    }

    /** Daily consolidation per account and business day, entry ids deduplicated per account. */
    static final class ConsolidationProcessor implements Processor<byte[], byte[], String, String> {
        private final Avro.Ledger avro = new Avro.Ledger();
        private ProcessorContext<String, String> ctx;
        private KeyValueStore<String, byte[]> balances;
        private KeyValueStore<String, Integer> ids;
        private KeyValueStore<String, byte[]> horizons;

        @Override
        public void init(ProcessorContext<String, String> context) {
            ctx = context;
            balances = context.getStateStore(BALANCES);
            ids = context.getStateStore(IDS);
            horizons = context.getStateStore(HORIZONS);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            Meter.tick();
            Consolidation.Entry e = avro.decode(record.value());
            if (e == null) {
                return;
            }
            Consolidation.Valid v = Consolidation.check(e);
            if (v == null) {
                return;
            }
            String account = e.accountId();
            Consolidation.Horizon h = horizon(horizons.get(account));
            Consolidation.Horizon next = Consolidation.plan(h, v.date());
            if (next == null) {
                return; // before the dedup horizon: too late
            }
            String idKey = account + '\0' + v.id();
            if (Consolidation.remembered(h, ids.get(idKey))) {
                return; // a duplicate: counted once
            }
            String key = Consolidation.Balance.key(account, v.date());
            Consolidation.Balance b = Consolidation.Balance.decode(balances.get(key));
            if (!b.add(v, e.occurredAt())) {
                return; // balance_overflow
            }
            ids.put(idKey, v.date());
            horizons.put(account, horizon(next));
            balances.put(key, b.encode());
            long now = System.currentTimeMillis();
            ctx.forward(new Record<>(key, b.json(account, v.date(), now), record.timestamp(),
                    originHeader(ctx.recordMetadata().orElse(null), 0)));
        }

        private static Consolidation.Horizon horizon(byte[] bytes) {
            if (bytes == null) {
                return null;
            }
            ByteBuffer b = ByteBuffer.wrap(bytes);
            return new Consolidation.Horizon(b.getInt(), b.getInt());
        }

        private static byte[] horizon(Consolidation.Horizon h) {
            return ByteBuffer.allocate(8).putInt(h.maxDate).putInt(h.floor).array();
        }
    }

    /** The {@code fluxo-id} header of output {@code i} of the input at {@code origin} (none without one). */
    static Headers originHeader(RecordMetadata origin, int i) {
        Headers h = new RecordHeaders();
        if (origin != null) {
            String id = "kafka-streams:" + origin.topic() + '/' + origin.partition() + '/' + origin.offset() + '/' + i;
            h.add("fluxo-id", id.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        }
        return h;
    }

    static Map<String, String> args(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --name value, got " + argv[i]);
            }
            m.put(argv[i].substring(2), argv[i + 1]);
        }
        return m;
    }

    static String need(Map<String, String> a, String name) {
        String v = a.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }
}
