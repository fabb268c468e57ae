//! Work orders (工单): model, pure transition function, deadlines, ledger.
