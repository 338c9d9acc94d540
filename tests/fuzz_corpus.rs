//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) and every saved crash
//! (`fuzz/regressions/<target>/`) through the fuzz targets' entry points (`fluxo::fuzzing`), on
//! stable, so a fixed crash stays fixed without nightly or cargo-fuzz. See FUZZING.md.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("avro_decode", fluxo::fuzzing::avro_decode),
    ("json_to_avro", fluxo::fuzzing::json_to_avro),
    ("topology", fluxo::fuzzing::topology),
    ("registry_compat", fluxo::fuzzing::registry_compat),
    ("registry_canonical", fluxo::fuzzing::registry_canonical),
    ("jwt_bearer", fluxo::fuzzing::jwt_bearer),
];

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_committed_corpus_and_regression_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
        let regressions = files(&root.join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            // A panic names the file through the test's output.
            eprintln!("{name}: {}", path.display());
            target(&data);
        }
    }
}
