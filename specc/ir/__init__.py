"""The IR: values, equations, graphs and programs (:mod:`.core`), symbolic dims, the builder, the printer."""
