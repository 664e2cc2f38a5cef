/*
 * he_backends.c - which backends this build has.
 *
 * Its own unit so that the configuration can ask (a database type whose
 * backend was not built is reported at startup) without depending on the
 * code that runs the checks.
 */
#include "he.h"

const char *
he_checks_backends(void)
{
    static const char names[] = ""
#ifdef HE_WITH_PG
        "Pg "
#endif
#ifdef HE_WITH_MYSQL
        "mysql "
#endif
#ifdef HE_WITH_SQLITE
        "SQLite "
#endif
#ifdef HE_WITH_REDIS
        "Redis "
#endif
        "Oracle(DBI)";                  /* always: it is done in Perl */

    return names;
}

int
he_checks_have_db(he_db_kind kind)
{
    switch (kind) {
#ifdef HE_WITH_PG
    case HE_DB_PG:
        return 1;
#endif
#ifdef HE_WITH_MYSQL
    case HE_DB_MYSQL:
        return 1;
#endif
#ifdef HE_WITH_SQLITE
    case HE_DB_SQLITE:
        return 1;
#endif
    case HE_DB_CALLBACK:
        return 1;
    default:
        return 0;
    }
}

int
he_checks_have_redis(void)
{
#ifdef HE_WITH_REDIS
    return 1;
#else
    return 0;
#endif
}
