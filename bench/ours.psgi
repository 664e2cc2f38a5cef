# bench/ours.psgi - bench/bare.psgi wrapped by RT::Extension::HealthEndpoint.
# GET /healthy/pong (or any path not ours) is the pass-through case,
# GET /healthz/ping the ping.  When bench/run passes database and Redis
# coordinates (HEBENCH_PG_*, HEBENCH_REDIS) they are configured too, as in
# production; the ping and the pass-through never use them.
use strict;
use warnings;
use File::Basename qw(dirname);
use Plack::Util;
use RT::Extension::HealthEndpoint;

my $bare = Plack::Util::load_psgi(dirname(__FILE__) . '/bare.psgi');
my %db = $ENV{HEBENCH_PG_PORT}
    ? (db => { type => 'Pg', host => $ENV{HEBENCH_PG_HOST},
               port => $ENV{HEBENCH_PG_PORT}, name => $ENV{HEBENCH_PG_DBNAME},
               user => $ENV{HEBENCH_PG_USER},
               password => $ENV{HEBENCH_PG_PASSWORD} })
    : ();
my %redis = $ENV{HEBENCH_REDIS} ? (redis => { server => $ENV{HEBENCH_REDIS} }) : ();

RT::Extension::HealthEndpoint->wrap($bare,
    ping_path => '/healthz/ping', status_path => '/healthz/status',
    timeout => 2, cache_seconds => 0, %db, %redis);
