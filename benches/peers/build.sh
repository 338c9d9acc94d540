#!/usr/bin/env bash
# Builds the peers of issue 15 (Kafka Streams and Flink, benches/peers/*) with Maven.
# Dependencies go to Maven's local repository (~/.m2, or MAVEN_REPO_LOCAL); each module's
# runtime classpath lands in <module>/target/classpath.txt, which run.sh uses.
# Not part of CI: `cargo test` never needs a JVM build.
set -euo pipefail
cd "$(dirname "$0")"
args=(-B -q package -DskipTests)
[[ -z ${MAVEN_REPO_LOCAL:-} ]] || args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL")
mvn "${args[@]}"
echo "peers: built $(ls -1 */target/*.jar | tr '\n' ' ')" >&2
