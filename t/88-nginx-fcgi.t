#!/usr/bin/perl
# Deployment: RT 5 as Debian's rt5-fcgi runs it (spawn-fcgi with 2 workers
# on a unix socket, as in rt5-fcgi.service) behind nginx with Debian's
# example location block (/usr/share/doc/rt5-fcgi/examples/), each on a
# private config, with a private PostgreSQL.  With HETEST_RT_HOME=
# /usr/share/request-tracker4, RT 4.4 the same way with rt4-fcgi's files.
#
# That example has "expires epoch;" for all of /rt: nginx then replaces
# the Cache-Control of 2xx/3xx answers coming from RT with "no-cache" and
# adds "Expires: Thu, 01 Jan 1970 00:00:01 GMT".  So here a 200 from the
# endpoints reaches the client with no-cache (still never cached without
# revalidation), while 503, 405 and 404 keep no-store: the main checks
# assert exactly that.  A second server block with eg/nginx-healthz.conf
# (the health paths in their own location, no expires) passes no-store
# through unchanged.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::Web qw(:all);
use HETest::Ps ();
BEGIN { require_or_skip(web_missing('rt', 'nginx-fcgi')) }
use Test::More;

my $EPOCH = 'Thu, 01 Jan 1970 00:00:01 GMT';

my $rt  = rt_for_web();
my $web = start_nginx_fcgi($rt);
note 'RT under nginx + spawn-fcgi at ' . $web->base . ' (Debian example), '
    . $web->{fixed_base} . ' (plus eg/nginx-healthz.conf), config ' . $web->{conf};

subtest "Debian's example and ${HETest::Web::FCGI_NAME}'s spawn-fcgi" => sub {
    my $ex = HETest::Web::slurp($HETest::Web::NGINX_EXAMPLE);
    like $ex, qr{^\s*expires\s+epoch;}m, 'the example has "expires epoch;"';
    like $ex, qr{fastcgi_pass\s+unix:/var/run/\Q$HETest::Web::FCGI_NAME\E\.sock;},
        "and passes to ${HETest::Web::FCGI_NAME}.sock";
    is scalar(@{ $web->{fcgi}{extra_pids} }), 2, 'spawn-fcgi started 2 RT workers';
};

deployment_checks($rt, $web, cache_control_200 => 'no-cache', expires_200 => $EPOCH);

subtest 'with eg/nginx-healthz.conf: no-store on every answer, RT unchanged' => sub {
    my $fixed = bless { base => $web->{fixed_base}, port => $web->{fixed_port} },
        q(HETest::Web::Server);
    HETest::Web::check_ping($fixed, 'ping');
    HETest::Web::check_status($fixed, { database => 'ok', redis => 'skipped' }, 'status');
    HETest::Web::check_405($fixed, '/healthz/status');
    my $r = http_get($fixed->url('/NoAuth/Login.html'));
    is $r->{status}, 200, 'RT login page';
    is $r->{headers}{expires}, $EPOCH, "RT's own pages still get Debian's expires epoch";
    $r = http_get($fixed->url('/healthz/pingx'));
    isnt $r->{content}, 'pong', '/rt/healthz/pingx: not the ping';
};

# Under spawn-fcgi the RT workers' parent is init (spawn-fcgi exits at once),
# so the checker a worker starts has no master process to follow: it sits
# in that worker's session and stops with the service stopped as a whole
# (systemd stops rt5-fcgi.service by its cgroup, HETest::Web by the process
# groups), but it outlives workers stopped by their pids until its lease
# ends (300 s without a reader) or the state file is replaced.
subtest 'the checker under spawn-fcgi follows no master' => sub {
    my $state = $rt->state_file;
    my @workers = @{ $web->{fcgi}{extra_pids} };
    my ($checker) = HETest::Ps::mappers($state, 'rt-he-checker');
    ok $checker, 'the checker runs' or return;
    my $sid = (split ' ', (HETest::Proc::slurp("/proc/$checker/stat") // '') =~ s/^.*\) //sr)[3];
    ok((grep { $_ == ($sid // -1) } @workers), "it is in the session of worker $sid");
    note "worker $_: parent " . { HETest::Ps::proc_status($_) }->{PPid} for @workers;
    kill 'TERM', @workers;
    ok poll(10, sub { !grep { kill 0, $_ } @workers }), 'the workers, stopped by pid, are gone';
    sleep 2;
    ok kill(0, $checker), 'with no master to follow, the checker stays: '
        . 'its lease (5 minutes without a reader) ends it';
    $web->{fcgi}->stop;
    ok poll(3, sub { !kill 0, $checker }), 'stopping their process groups stops it';
};

$web->stop;
$rt->cleanup;
done_testing;
