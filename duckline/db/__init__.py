"""The database: engine, column types, the declarative Base, every table (models) and the migrations."""
