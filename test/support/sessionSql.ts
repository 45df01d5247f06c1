import type { QueryLog, TestDatabase } from './databases.js';

/**
 * Writes SQL given in PostgreSQL's quoting as `db` logs it: backticks on SQLite and the MySQL family, and no
 * `returning` clause on the MySQL family (MikroORM reads the generated id from the insert's result there).
 */
export function sqlFor(db: TestDatabase): (...statements: string[]) => string[] {
  return (...statements) =>
    statements.map(statement => {
      if (db.name === 'postgresql') {
        return statement;
      }
      const quoted = statement.replaceAll('"', '`');
      return db.name === 'sqlite' ? quoted : quoted.replace(/ returning `id`$/, '');
    });
}

/** The query MikroORM's MySQL platform sends once per ORM, at its first insert, to learn the auto-increment step. */
const AUTO_INCREMENT_STEP = "show variables like 'auto_increment_increment'";

/** The statements `log` holds, without the MySQL family's one-off auto-increment query. */
export function sessionQueries(log: QueryLog): string[] {
  return log.queries.filter(query => query !== AUTO_INCREMENT_STEP);
}
