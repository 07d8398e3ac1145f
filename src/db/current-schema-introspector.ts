import { type DatabaseIntrospector, type DatabaseMetadata, type Kysely, PostgresDialect, PostgresIntrospector, sql, type TableMetadata } from 'kysely'

/**
 * Kysely's PostgreSQL introspector reads the tables of every schema and resolves each by name, so a schema dropped
 * meanwhile (another deployment's, a finished test's) fails it with "schema … does not exist" — and with it the
 * migrator, which only asks which tables exist. This one answers for the current schema alone, by catalog OIDs.
 */
class CurrentSchemaIntrospector implements DatabaseIntrospector {
  constructor(private readonly db: Kysely<any>) {}

  getSchemas() {
    return new PostgresIntrospector(this.db).getSchemas()
  }

  async getTables(): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; schema: string; kind: string }>`
      select c.relname as name, n.nspname as schema, c.relkind as kind
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind in ('r', 'p', 'v', 'm')`.execute(this.db)
    // Columns are left out: nothing here reads them, and reading them is what races.
    return rows.map((row) => ({ name: row.name, schema: row.schema, isView: row.kind === 'v' || row.kind === 'm', columns: [] }))
  }

  async getMetadata(): Promise<DatabaseMetadata> {
    return { tables: await this.getTables() }
  }
}

/** Kysely's PostgreSQL dialect, introspecting the current schema only. */
export class CurrentSchemaPostgresDialect extends PostgresDialect {
  override createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new CurrentSchemaIntrospector(db)
  }
}
