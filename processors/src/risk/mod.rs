//! Risk scoring: CPF/CNPJ validation, the blacklist table and behaviour rules.
