/*
 * he_sqlite.c - SQLite check: open the file read-only and read its schema.
 *
 * "SELECT 1" would not touch the file; reading sqlite_master proves the
 * file is a readable database (a non-database file gives SQLITE_NOTADB)
 * with RT's tables in it.  It runs in the checker's child process: POSIX
 * locks belong to a process, so closing this handle cannot drop a lock
 * that RT's own process holds on the same file.
 * The deadline bounds lock waits (busy timeout) and the statement itself
 * (progress handler).  Built only with -DHE_WITH_SQLITE.
 */
#ifdef HE_WITH_SQLITE

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "he.h"

#define HE_SQLITE_ANY "SELECT count(*) FROM sqlite_master"
#define HE_SQLITE_TABLE \
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1"
#define HE_SQLITE_PROGRESS_OPS 1000           /* VM steps between deadline checks */

/* Progress handler: non-zero interrupts the statement (SQLITE_INTERRUPT)
 * once the deadline, pointed to by arg, has passed. */
static int
he_sqlite_past_deadline(void *arg)
{
    return he_time_now() >= *(const double *)arg;
}

/* The file must exist and be a file: clearer messages than SQLite's
 * "unable to open database file" / "disk I/O error".  HE_OK or HE_FAIL
 * with err set. */
static he_result
he_sqlite_stat(const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "no database file configured");
        return HE_FAIL;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            snprintf(err, errlen, "database file %s does not exist", path);
        else
            snprintf(err, errlen, "database file %s: %s", path,
                     strerror(errno));
        return HE_FAIL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "database file %s is not a regular file", path);
        return HE_FAIL;
    }
    return HE_OK;
}

/* Bind and step the schema query; *count gets its result.  The
 * statement is finalized here.  SQLITE_ROW or the error code. */
static int
he_sqlite_count(sqlite3 *db, const char *table, int *count)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, table ? HE_SQLITE_TABLE : HE_SQLITE_ANY, -1,
                            &stmt, NULL);
    if (rc == SQLITE_OK && table != NULL)
        rc = sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);             /* NULL-safe */
    return rc;
}

/*
 * Read the schema: a file that SQLite cannot read as a database fails
 * here (SQLITE_NOTADB); one without RT's table (or, without a table to
 * require, without any table: a zero-length file is a valid, empty
 * database) is not a database RT can run on.  HE_OK or HE_FAIL.
 */
static he_result
he_sqlite_query(sqlite3 *db, const char *table, const double *deadline,
                double start, char *err, size_t errlen)
{
    int rc, count = -1;

    rc = he_sqlite_count(db, table, &count);
    if (rc == SQLITE_ROW && count > 0)
        return HE_OK;
    if (rc == SQLITE_ROW && table != NULL)
        snprintf(err, errlen, "no table %s: not RT's database", table);
    else if (rc == SQLITE_ROW)
        snprintf(err, errlen, "the database has no tables");
    else if (rc == SQLITE_INTERRUPT && he_time_now() >= *deadline)
        snprintf(err, errlen, "timed out after %.3f s during query",
                 he_time_now() - start);
    else
        snprintf(err, errlen, "query: %s", sqlite3_errmsg(db));
    return HE_FAIL;
}

/*
 * he_sqlite_check - see he.h.  c->name is the database file (absolute
 * path).  Opened read-only, so a missing file is never created.
 */
he_result
he_sqlite_check(const he_db_config *c, he_probe *p)
{
    double deadline = p->deadline, start = p->start;
    char *err = p->err;
    size_t errlen = p->errlen;
    sqlite3 *db = NULL;
    he_result r;
    int rc;

    he_probe_phase(p, HE_PHASE_CONNECTING);
    r = he_sqlite_stat(c->name, err, errlen);
    if (r != HE_OK)
        return r;
    rc = sqlite3_open_v2(c->name, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "open %s: %s", c->name,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        r = HE_FAIL;
        goto cleanup;
    }
    he_probe_phase(p, HE_PHASE_QUERYING);
    sqlite3_busy_timeout(db, he_time_left_ms(deadline));
    sqlite3_progress_handler(db, HE_SQLITE_PROGRESS_OPS, he_sqlite_past_deadline,
                             &deadline);
    r = he_sqlite_query(db, c->require_table, &deadline, start, err, errlen);

cleanup:
    sqlite3_close(db);                  /* also after a failed open */
    return r;
}

#else  /* !HE_WITH_SQLITE */

typedef int he_sqlite_not_built;        /* keeps the unit non-empty (ISO C) */

#endif /* HE_WITH_SQLITE */
