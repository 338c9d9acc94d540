//! Daily consolidation: debit/credit ledger entries into a daily balance per account.
