"""Getting finished call records into storage: the background recorder, its SQL sink and the
on-disk spool that holds records while the database is away."""
