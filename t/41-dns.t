# A database or Redis host name that does not resolve is a plain 'fail',
# within the deadline whatever the resolver does (name lookups block inside
# every client library; the check thread is abandoned at the deadline).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use RT::Extension::HealthEndpoint;

my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();
my $host = 'he-no-such-host.invalid';    # RFC 6761: never resolves
my $timeout = 1;

my @cases = (
    [ Pg    => db => { type => 'Pg', host => $host, name => 'x', user => 'x' } ],
    [ mysql => db => { type => 'mysql', host => $host, name => 'x', user => 'x' } ],
    [ Redis => redis => { server => "$host:6379" } ],
);
for my $case (@cases) {
    my ($backend, $key, $conf) = @$case;
    SKIP: {
        skip "$backend backend not built", 4
            unless $built{$backend} || ($ENV{CI} // '') eq 'true';
        my @log;
        my $app = RT::Extension::HealthEndpoint->wrap(sub { [ 200, [], [] ] },
            cache_seconds => 0, timeout => $timeout, $key => $conf,
            logger => sub { push @log, $_[1] });
        my $t0 = time;
        my $res = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
        my $took = time - $t0;
        is($res->[0], 503, "$backend: unresolvable host is 503");
        my $check = $key eq 'db' ? 'database' : 'redis';
        like($res->[2][0], qr/"$check":"fail"/, "$backend: $check fail");
        ok($took < $timeout + 0.3, sprintf("$backend: answered in %.3f s", $took));
        like("@log", qr/$check check failed/, "$backend: reason logged");
        diag sprintf("%s: %.3f s: %s", $backend, $took, $log[0] // '');
    }
}
done_testing;
