//! Per-table sizes of a fluxo embedded state store (a redb file): entries, stored key and value
//! bytes, metadata and fragmented bytes, pages; and the whole file's allocation. For
//! benches/soak.sh, to tell which state grows. Open a store no `fluxo` has open (redb locks it).
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: redb-stats STATE.redb")?;
    let db = Database::open(&path)?;
    let mib = |b: u64| b as f64 / 1048576.0;
    {
        let w = db.begin_write()?;
        let s = w.stats()?;
        let ps = s.page_size() as u64;
        println!("file {:.1} MiB: allocated {:.1} MiB ({} pages of {} B), stored {:.1} MiB, metadata {:.1} MiB, fragmented {:.1} MiB, leaf pages {}, branch pages {}, height {}",
            mib(std::fs::metadata(&path)?.len()), mib(s.allocated_pages() * ps), s.allocated_pages(), ps,
            mib(s.stored_bytes()), mib(s.metadata_bytes()), mib(s.fragmented_bytes()), s.leaf_pages(), s.branch_pages(), s.tree_height());
        w.abort()?;
    }
    let r = db.begin_read()?;
    println!("{:<40} {:>10} {:>12} {:>12} {:>12} {:>8} {:>8}", "table", "entries", "stored MiB", "meta MiB", "frag MiB", "leaves", "branches");
    for h in r.list_tables()? {
        let name = h.name().to_string();
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        let (len, st) = match r.open_table(def) {
            Ok(t) => (t.len()?, t.stats()?),
            Err(_) => {
                let def: TableDefinition<&[u8], i64> = TableDefinition::new(&name);
                let t = r.open_table(def)?;
                (t.len()?, t.stats()?)
            }
        };
        println!("{:<40} {:>10} {:>12.2} {:>12.2} {:>12.2} {:>8} {:>8}", name, len, mib(st.stored_bytes()), mib(st.metadata_bytes()), mib(st.fragmented_bytes()), st.leaf_pages(), st.branch_pages());
    }
    Ok(())
}
