#!perl
# FastCGI processes that start one by one (mod_fcgid, spawn-fcgi, Debian's
# rt5-fcgi) share one checker through the state file, and a restart of
# those processes alone with a changed $DatabasePassword takes effect
# within Timeout + 1 s: the newer configuration retires the old checker.
use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use HETest::Proc qw(scratch_dir);
use HETest::Ps qw(checkers wait_for);
use HETest::Servers qw(:all);
use HEBuild qw(skip_all_if_omitted);
use RT::Extension::HealthEndpoint;

my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();
skip_all_if_omitted('Pg');
need_server(sub { $built{Pg} }, 'built without the Pg backend');
need_server(\&have_postgres, 'PostgreSQL server binaries');
need_server(\&have_fastcgi, 'nginx, plackup and Plack::Handler::FCGI (libfcgi-perl)');

my $pg = start_postgres();
my $blib = "$FindBin::Bin/../blib";
my $dir = scratch_dir('fcgi-state');
chmod 0777, $dir;                       # the FastCGI processes run as nobody
my $state = "$dir/he.state";
my %env = (HEB_PG => join(':', '127.0.0.1', $pg->port, $pg->dbname, $pg->user,
                          $pg->password),
           HEB_CACHE => 1, HEB_TIMEOUT => 1, HEB_STATE => $state);
my $f = start_fastcgi(app => "$FindBin::Bin/../bench/soak.psgi", n => 4,
                      inc => [ "$blib/lib", "$blib/arch" ], env => \%env);
my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
my $url = 'http://127.0.0.1:' . $f->port . '/healthz/status';
sub code { $http->get($url)->{status} }

my @codes = map { code() } 1 .. 40;     # nginx spreads them over the four
is_deeply [ grep { $_ != 200 } @codes ], [], '40 answers from 4 processes: 200';
my @c = checkers($state);
is scalar @c, 1, 'one checker for the four processes';
my %user = server_user();
is((stat $state)[4], $user{uid}, "the state file belongs to the processes' user ($user{name})");

$pg->psql(q{ALTER ROLE "} . $pg->user . q{" PASSWORD 'changed-pw'});
ok wait_for(1 + 2 * 1 + 1, sub { code() == 503 }),
    'the old password stops working: 503';
my $t0 = time;
$f->restart(HEB_PG => join(':', '127.0.0.1', $pg->port, $pg->dbname,
                           $pg->user, 'changed-pw'));
my $restarted = time;
ok wait_for(1 + 1, sub { code() == 200 }), 'FastCGI restarted with the new '
    . 'password: 200';
cmp_ok time - $restarted, '<=', 1 + 1,
    sprintf 'within Timeout + 1 s of the restart (%.2f s)', time - $restarted;
my @now = checkers($state);
is scalar @now, 1, 'one checker';
isnt $now[0], $c[0], 'the newer configuration replaced the old checker';
my @after = map { code() } 1 .. 20;
is_deeply [ grep { $_ != 200 } @after ], [], 'all four processes: 200';
$f->stop;
done_testing;
