import { type Kysely, sql } from 'kysely'
// The one exception to "migrations import no app code": the backfill must store exactly the key the app
// compares against. lookalikes.ts is pure (no database, no config). Should skeleton() ever change (new
// confusables data), a later migration recomputes the column the same way.
import { skeleton } from '../../users/lookalikes.js'

const BATCH = 500

/**
 * users.username_skeleton: the confusable skeleton of the username, under a unique index, so that two
 * usernames that look alike cannot both exist, not even when their sign-ups race. Existing accounts are
 * backfilled oldest first; one that already looks like an older one keeps its name with a null skeleton
 * (nulls never collide), and the older account holds the key against every newcomer.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').addColumn('username_skeleton', 'text').execute()

  const seen = new Set<string>()
  let after = 0
  for (;;) {
    const rows: { id: number; username: string }[] = await db
      .selectFrom('users')
      .select(['id', 'username'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(BATCH)
      .execute()
    if (rows.length === 0) break
    after = rows[rows.length - 1]?.id as number
    const keyed = rows.flatMap((row) => {
      const key = skeleton(row.username)
      if (seen.has(key)) return []
      seen.add(key)
      return [sql`(cast(${row.id} as integer), cast(${key} as text))`]
    })
    if (keyed.length === 0) continue
    // One statement per batch, in SQL both dialects read.
    await sql`with keyed (id, skeleton) as (values ${sql.join(keyed)})
      update users set username_skeleton = (select keyed.skeleton from keyed where keyed.id = users.id)
      where id in (select id from keyed)`.execute(db)
  }

  await db.schema.createIndex('users_username_skeleton_key').unique().on('users').column('username_skeleton').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('users_username_skeleton_key').execute()
  await db.schema.alterTable('users').dropColumn('username_skeleton').execute()
}
