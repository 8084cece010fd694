"""The front end: ``.nn`` text -> parse tree -> typed AST -> checked IR :class:`~specc.ir.core.Program`."""
