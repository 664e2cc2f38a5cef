# No memory is lost per request, on any path through the XS glue.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use HETest::Servers qw(make_sqlite);
use RT::Extension::HealthEndpoint;

BEGIN {
    unless (eval { require Test::LeakTrace; Test::LeakTrace->import; 1 }) {
        # under CI a missing checker is a failure, not a silent skip
        if (($ENV{CI} // '') eq 'true') {
            plan tests => 1;
            fail('Test::LeakTrace is required under CI=true '
                 . '(install libtest-leaktrace-perl)');
            exit 1;
        }
        plan skip_all => 'Test::LeakTrace not installed';
    }
}

my $dir = tempdir(CLEANUP => 1);
my $db = "$dir/rt.db";
# without the SQLite backend the SQLite apps take the "not built" path
make_sqlite($db)
    if grep { $_ eq 'SQLite' } RT::Extension::HealthEndpoint::backends();

my $inner = sub { [ 200, [ 'Content-Type' => 'text/plain' ], ['inner'] ] };
# counts only: a logger that kept the messages would look like a leak
my $logged = 0;
my $logger = sub { $logged++ };

my %apps = (
    sqlite => RT::Extension::HealthEndpoint->wrap($inner, cache_seconds => 0,
        db => { type => 'SQLite', name => $db }, logger => $logger),
    missing => RT::Extension::HealthEndpoint->wrap($inner, cache_seconds => 0,
        db => { type => 'SQLite', name => "$dir/none.db" }, logger => $logger),
    cached => RT::Extension::HealthEndpoint->wrap($inner,
        db => { type => 'SQLite', name => $db }, logger => $logger),
    allow => RT::Extension::HealthEndpoint->wrap($inner,
        allow_from => ['10.0.0.0/8'], logger => $logger),
    refused => RT::Extension::HealthEndpoint->wrap($inner, cache_seconds => 0,
        timeout => 0.5, logger => $logger,
        db => { type => 'Pg', host => '127.0.0.1', port => 1, name => 'x' },
        redis => { server => '127.0.0.1:1' }),
);

my @requests = (
    [ GET => '/healthz/ping' ], [ HEAD => '/healthz/ping' ],
    [ GET => '/healthz/status' ], [ HEAD => '/healthz/status' ],
    [ POST => '/healthz/status' ], [ GET => '/other' ],
);

# warm up: first calls allocate caches inside perl itself
for my $app (values %apps) {
    $app->({ REQUEST_METHOD => $_->[0], PATH_INFO => $_->[1] }) for @requests;
}

for my $name (sort keys %apps) {
    my $app = $apps{$name};
    for my $r (@requests) {
        my %env = (REQUEST_METHOD => $r->[0], PATH_INFO => $r->[1],
                   REMOTE_ADDR => '127.0.0.1');
        no_leaks_ok(sub { $app->(\%env) for 1 .. 50 }, "$name: @$r");
    }
}

no_leaks_ok(sub {
    for (1 .. 20) {
        my $app = RT::Extension::HealthEndpoint->wrap($inner, timeout => 'bad',
            ping_path => '/p', allow_from => ['::1', 'x'], logger => $logger,
            db => { type => 'Pg', host => 'h', extra => { sslmode => 'disable' } },
            redis => { server => '[::1]:1', sentinels => ['a', 'b:2'], service => 's' });
        $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/p' });
    }
}, 'building and dropping wrappers');

no_leaks_ok(sub {
    for (1 .. 20) {
        eval { RT::Extension::HealthEndpoint->wrap($inner, logger => 'x') };
        eval { RT::Extension::HealthEndpoint->wrap($inner, db_check => []) };
        eval { RT::Extension::HealthEndpoint->_new('x', $inner, undef, undef) };
    }
}, 'wrap croaking on a caller mistake');

no_leaks_ok(sub {
    for (1 .. 20) {
        eval { $apps{sqlite}->([]) };
        eval { $apps{sqlite}->(undef) };
        $apps{sqlite}->({ PATH_INFO => [], REQUEST_METHOD => {} });
    }
}, 'bad env');

ok($logged > 0, "failures reached the logger ($logged messages)");
done_testing;
