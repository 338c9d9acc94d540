package fluxo.peers;

/** Minimal JSON writing for the peers' outputs (flat objects of strings and numbers). */
public final class Json {
    private final StringBuilder sb = new StringBuilder(256).append('{');

    /** A string member (decimals are written as strings too, with their scale). */
    public Json str(String name, Object value) {
        key(name).append('"');
        escape(String.valueOf(value));
        sb.append('"');
        return this;
    }

    /** A number member. */
    public Json num(String name, long value) {
        key(name).append(value);
        return this;
    }

    private StringBuilder key(String name) {
        if (sb.length() > 1) {
            sb.append(',');
        }
        return sb.append('"').append(name).append("\":");
    }

    private void escape(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
    }

    @Override
    public String toString() {
        return sb + "}";
    }
}
