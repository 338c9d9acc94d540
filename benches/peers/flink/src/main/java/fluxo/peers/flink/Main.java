package fluxo.peers.flink;

import fluxo.peers.Avro;
import fluxo.peers.Consolidation;
import fluxo.peers.Meter;
import fluxo.peers.PriceChange;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.KafkaSourceBuilder;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * The Flink peer: price change or daily consolidation as a DataStream job run in a local
 * mini-cluster (parallelism 1 by default: one core's worth, like one Kafka Streams thread),
 * keyed state on the heap (Flink's default HashMapStateBackend), KafkaSource and KafkaSink,
 * transactional under exactly-once (committed on each checkpoint).
 *
 * <pre>
 * Main --rule price-change|consolidation --bootstrap HOST:PORT --input TOPIC --output TOPIC
 *      --group ID [--guarantee exactly_once|at_least_once] [--checkpoint-ms 1000]
 *      [--checkpoint-dir DIR (default: java.io.tmpdir/flink-checkpoints)]
 *      [--bounded true] [--idle-ms 30000] [--expect N] [--parallelism 1]
 * </pre>
 * Price change keeps fluxo's per-symbol event time (the symbol's newest quote minus the
 * allowed lateness) in keyed state: Flink's own watermark is per source split, shared by every
 * symbol of a partition, and would call different quotes late. The job still runs with
 * event-time watermarks (bounded out-of-orderness = the allowed lateness): with
 * {@code --bounded true} the source stops at the offsets that were the end when it started,
 * the final watermark fires each symbol's event-time timer and its held quotes are released
 * (fluxo's end-of-input release); unbounded, a processing-time timer per symbol releases a
 * quiet symbol's quotes after {@code --idle-ms} (fluxo's wall-clock idle release).
 *
 * <p>Every output caused by an input record carries a {@code fluxo-id} header naming that input
 * ({@code flink:<topic>/<partition>/<offset>/<i>}, fluxo's own format): the source's
 * deserializer takes the record's coordinates, they travel with the decoded record to the
 * keyed function and on to the sink's serializer. The latency tap of benches/loadtest.rs joins
 * on it; it is measurement plumbing (one short string per record). Outputs of timers (the idle
 * and end-of-input releases) have no input and carry none.
 */
public final class Main {
    private Main() {}

    /** A record for the sink: its key, JSON value and {@code fluxo-id} header (null: none). */
    public record Out(String key, String json, String origin) {}

    /** A raw input value and where it was read ({@code flink:<topic>/<partition>/<offset>}). */
    public record Raw(byte[] value, String origin) {}

    /** A decoded quote and the coordinates of its record. */
    public record Quote(PriceChange.Input in, String origin) {}

    /** A decoded ledger entry and the coordinates of its record. */
    public record Entry(Consolidation.Entry in, String origin) {}

    /** Entry point. */
    public static void main(String[] argv) throws Exception {
        Map<String, String> a = args(argv);
        String rule = need(a, "rule");
        String bootstrap = need(a, "bootstrap");
        String output = need(a, "output");
        boolean exactly = !"at_least_once".equals(a.getOrDefault("guarantee", "exactly_once"));
        boolean bounded = Boolean.parseBoolean(a.getOrDefault("bounded", "false"));
        long expect = Long.parseLong(a.getOrDefault("expect", "0"));
        long idleMs = Long.parseLong(a.getOrDefault("idle-ms", String.valueOf(PriceChange.LATENESS_MS)));

        // Checkpoints to files, as Flink's documentation asks for anything but tiny state: the
        // default JobManager storage caps a checkpoint at 5 MB, and a failed checkpoint fails
        // the job over (consolidation's keyed state outgrows it within seconds).
        Configuration conf = new Configuration();
        conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
        conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, java.nio.file.Path.of(
                a.getOrDefault("checkpoint-dir", System.getProperty("java.io.tmpdir") + "/flink-checkpoints"))
                .toAbsolutePath().toUri().toString());
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(Integer.parseInt(a.getOrDefault("parallelism", "1")));
        env.enableCheckpointing(Long.parseLong(a.getOrDefault("checkpoint-ms", "1000")),
                exactly ? CheckpointingMode.EXACTLY_ONCE : CheckpointingMode.AT_LEAST_ONCE);

        KafkaSourceBuilder<Raw> source = KafkaSource.<Raw>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(need(a, "input"))
                .setGroupId(need(a, "group"))
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setDeserializer(new Coordinates());
        if (bounded) {
            source.setBounded(OffsetsInitializer.latest());
        }
        KafkaSink<Out> sink = KafkaSink.<Out>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer((KafkaRecordSerializationSchema<Out>) (o, ctx, ts) -> {
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(
                            output, o.key().getBytes(StandardCharsets.UTF_8), o.json().getBytes(StandardCharsets.UTF_8));
                    if (o.origin() != null) {
                        r.headers().add("fluxo-id", o.origin().getBytes(StandardCharsets.UTF_8));
                    }
                    return r;
                })
                .setDeliveryGuarantee(exactly ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE)
                .setTransactionalIdPrefix(need(a, "group"))
                // below the broker's transaction.max.timeout.ms (15 min)
                .setProperty("transaction.timeout.ms", "600000")
                .build();

        DataStream<Out> out;
        switch (rule) {
            case "price-change" -> {
                DataStream<Quote> quotes = env
                        .fromSource(source.build(), WatermarkStrategy.noWatermarks(), "asset-prices")
                        .map(new DecodePrices()).filter(q -> q != null)
                        .assignTimestampsAndWatermarks(WatermarkStrategy
                                .<Quote>forBoundedOutOfOrderness(Duration.ofMillis(PriceChange.LATENESS_MS))
                                .withTimestampAssigner((q, ts) -> q.in().eventTime()));
                out = quotes.keyBy(q -> q.in().symbol())
                        .process(new PriceChangeFn(bounded, idleMs, expect)).name("price-change");
            }
            case "consolidation" -> out = env
                    .fromSource(source.build(), WatermarkStrategy.noWatermarks(), "ledger-entries")
                    .map(new DecodeLedger()).filter(e -> e != null)
                    .keyBy(e -> e.in().accountId())
                    .process(new ConsolidationFn(expect)).name("daily-consolidation");
            default -> throw new IllegalArgumentException("--rule " + rule + ": price-change or consolidation");
        }
        out.sinkTo(sink).name("sink");
        env.execute("fluxo-peer-" + rule);
        System.err.println("peers: job finished");
    }

    /** Raw record values and their coordinates; decoding happens in the map after it. */
    static final class Coordinates implements KafkaRecordDeserializationSchema<Raw> {
        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Raw> out) {
            out.collect(new Raw(record.value(),
                    "flink:" + record.topic() + '/' + record.partition() + '/' + record.offset()));
        }

        @Override
        public TypeInformation<Raw> getProducedType() {
            return TypeInformation.of(Raw.class);
        }
    }

    /** AssetPrice Avro to quotes (null when a record does not decode, filtered out). */
    static final class DecodePrices implements org.apache.flink.api.common.functions.MapFunction<Raw, Quote> {
        private transient Avro.Prices avro;

        @Override
        public Quote map(Raw raw) {
            if (avro == null) {
                avro = new Avro.Prices();
            }
            PriceChange.Input in = avro.decode(raw.value());
            return in == null ? null : new Quote(in, raw.origin());
        }
    }

    /** LedgerEntry Avro to entries (null when a record does not decode, filtered out). */
    static final class DecodeLedger implements org.apache.flink.api.common.functions.MapFunction<Raw, Entry> {
        private transient Avro.Ledger avro;

        @Override
        public Entry map(Raw raw) {
            if (avro == null) {
                avro = new Avro.Ledger();
            }
            Consolidation.Entry e = avro.decode(raw.value());
            return e == null ? null : new Entry(e, raw.origin());
        }
    }

    /** Price change per symbol in keyed state. */
    static final class PriceChangeFn extends KeyedProcessFunction<String, Quote, Out> {
        private final boolean bounded;
        private final long idleMs;
        private final long expect;
        private transient ValueState<PriceChange.State> state;
        private transient ValueState<Long> idleTimer;
        private transient List<String> alerts;

        PriceChangeFn(boolean bounded, long idleMs, long expect) {
            this.bounded = bounded;
            this.idleMs = idleMs;
            this.expect = expect;
        }

        @Override
        public void open(OpenContext ctx) {
            Meter.expect(expect);
            state = getRuntimeContext().getState(new ValueStateDescriptor<>("symbol", PriceChange.State.class));
            idleTimer = getRuntimeContext().getState(new ValueStateDescriptor<>("idle-timer", Types.LONG));
            alerts = new ArrayList<>();
        }

        @Override
        public void processElement(Quote q, Context ctx, Collector<Out> out) throws Exception {
            Meter.tick();
            PriceChange.Input in = q.in();
            PriceChange.State s = state.value();
            if (s == null) {
                s = new PriceChange.State();
            }
            long now = ctx.timerService().currentProcessingTime();
            if (!PriceChange.process(s, in, now, alerts)) {
                return; // late or invalid: fluxo dead-letters it
            }
            state.update(s);
            emit(in.symbol(), q.origin(), out);
            if (bounded) {
                // fires on the final watermark at the end of the bounded input
                ctx.timerService().registerEventTimeTimer(Long.MAX_VALUE);
            } else if (s.holding() && idleTimer.value() == null) {
                long at = now + idleMs;
                ctx.timerService().registerProcessingTimeTimer(at);
                idleTimer.update(at);
            }
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Out> out) throws Exception {
            PriceChange.State s = state.value();
            if (s == null) {
                return;
            }
            String symbol = ctx.getCurrentKey();
            if (bounded) {
                PriceChange.releaseAll(s, symbol, alerts);
            } else {
                idleTimer.clear();
                long now = ctx.timerService().currentProcessingTime();
                if (!s.holding()) {
                    return;
                }
                if (s.arrived + idleMs > now) {
                    // quotes came since the timer was set: wait for the quiet period again
                    long at = s.arrived + idleMs;
                    ctx.timerService().registerProcessingTimeTimer(at);
                    idleTimer.update(at);
                    return;
                }
                PriceChange.releaseAll(s, symbol, alerts);
            }
            state.update(s);
            emit(symbol, null, out);
        }

        private void emit(String symbol, String origin, Collector<Out> out) {
            for (int i = 0; i < alerts.size(); i++) {
                out.collect(new Out(symbol, alerts.get(i), origin == null ? null : origin + '/' + i));
            }
            alerts.clear();
        }
    }

    /** Daily consolidation per account: balances per day, entry ids and the dedup horizon. */
    static final class ConsolidationFn extends KeyedProcessFunction<String, Entry, Out> {
        private final long expect;
        private transient MapState<Integer, Consolidation.Balance> days;
        private transient MapState<String, Integer> ids;
        private transient ValueState<Consolidation.Horizon> horizon;

        ConsolidationFn(long expect) {
            this.expect = expect;
        }

        @Override
        public void open(OpenContext ctx) {
            Meter.expect(expect);
            days = getRuntimeContext().getMapState(
                    new MapStateDescriptor<>("days", Types.INT, TypeInformation.of(Consolidation.Balance.class)));
            ids = getRuntimeContext().getMapState(new MapStateDescriptor<>("entry-ids", Types.STRING, Types.INT));
            horizon = getRuntimeContext().getState(new ValueStateDescriptor<>("horizon", Consolidation.Horizon.class));
        }

        @Override
        public void processElement(Entry entry, Context ctx, Collector<Out> out) throws Exception {
            Meter.tick();
            Consolidation.Entry e = entry.in();
            Consolidation.Valid v = Consolidation.check(e);
            if (v == null) {
                return;
            }
            Consolidation.Horizon h = horizon.value();
            Consolidation.Horizon next = Consolidation.plan(h, v.date());
            if (next == null) {
                return; // before the dedup horizon: too late
            }
            if (Consolidation.remembered(h, ids.get(v.id()))) {
                return; // a duplicate: counted once
            }
            Consolidation.Balance b = days.get(v.date());
            if (b == null) {
                b = new Consolidation.Balance();
            }
            if (!b.add(v, e.occurredAt())) {
                return; // balance_overflow
            }
            ids.put(v.id(), v.date());
            horizon.update(next);
            days.put(v.date(), b);
            String account = e.accountId();
            out.collect(new Out(Consolidation.Balance.key(account, v.date()),
                    b.json(account, v.date(), ctx.timerService().currentProcessingTime()), entry.origin() + "/0"));
        }
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
