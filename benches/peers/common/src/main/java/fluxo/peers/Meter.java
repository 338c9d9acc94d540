package fluxo.peers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Counts the records a peer has processed and prints, on standard error, the wall clock and
 * this process's CPU time (utime + stime of /proc/self/stat) at the first record and when the
 * count reaches {@code --expect}: the throughput benchmark reads these two lines.
 * One instance per process; processing is single-threaded in both peers (one stream thread,
 * parallelism 1), so a plain counter does.
 */
public final class Meter {
    private static long expect = Long.MAX_VALUE;
    private static long count;

    private Meter() {}

    /** Sets how many records make the run complete (0 or less: never). */
    public static void expect(long n) {
        expect = n > 0 ? n : Long.MAX_VALUE;
    }

    /** One record processed. */
    public static void tick() {
        long n = ++count;
        if (n == 1) {
            System.err.printf("peers: first %d %.2f%n", System.currentTimeMillis(), cpuSeconds());
        }
        if (n == expect) {
            System.err.printf("peers: done %d %d %.2f%n", n, System.currentTimeMillis(), cpuSeconds());
        }
    }

    /** CPU seconds (user + system) of this process so far, -1 if /proc is not readable. */
    public static double cpuSeconds() {
        try {
            String stat = Files.readString(Path.of("/proc/self/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            // fields after the command: state is f[0]; utime and stime are fields 14 and 15
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }
}
