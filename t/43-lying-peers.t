#!perl
# Peers that lie (issue 8): a "Redis" announcing a 2-billion-element array
# or streaming a 2 GB bulk reply, a "PostgreSQL" sending a 1 GB DataRow
# or asking for SCRAM with 2^31 iterations.  Each answer is 503 within
# Timeout + 0.1 s, this process's peak memory stays where it was, and
# nothing keeps spinning: the run is killed with its memory and CPU.
use strict;
use warnings;

use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use HETest::Ps qw(:all);
use HEBuild qw(need_backend);
use HETest::Servers qw(start_scripted_peer start_fake_pg);
use RT::Extension::HealthEndpoint;

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/status';
my $TIMEOUT = 1;
sub stream_forever {
    my ($c) = @_;
    my $chunk = 'x' x 65536;
    1 while defined syswrite $c, $chunk;
}

# name => [ backend, a function making the peer ]
my %peer = (
    'Redis: a 2-billion-element array' => [ Redis => sub {
        start_scripted_peer(serve => sub {
            my ($c) = @_;
            sysread $c, my $buf, 65536;
            syswrite $c, "*2000000000\r\n";
            sleep 10;
        });
    } ],
    'Redis: a 2 GB bulk reply, streamed' => [ Redis => sub {
        start_scripted_peer(serve => sub {
            my ($c) = @_;
            sysread $c, my $buf, 65536;
            syswrite $c, "\$2000000000\r\n";
            stream_forever($c);
        });
    } ],
    'PostgreSQL: a 1 GB DataRow' => [ Pg => sub {
        start_fake_pg(datarow => 1 << 30);
    } ],
    'PostgreSQL: SCRAM with 2^31 iterations' => [ Pg => sub {
        start_fake_pg(scram_iterations => 2147483647);
    } ],
);

for my $name (sort keys %peer) {
    my ($backend, $serve) = @{ $peer{$name} };
    subtest $name => sub {
        need_backend($backend) or return;
        my $port = $serve->()->port;
        my @conf = $backend eq 'Redis'
            ? (redis => { server => "127.0.0.1:$port" })
            : (db => { type => 'Pg', host => '127.0.0.1', port => $port,
                       name => 'x', user => 'x', password => 'secret',
                       extra => { sslmode => 'disable' } });
        my @log;
        my $app = RT::Extension::HealthEndpoint->wrap(sub { [ 200, [], [] ] },
            cache_seconds => 0, timeout => $TIMEOUT, @conf,
            logger => sub { push @log, $_[1] });
        my %before = proc_status($$);
        my $t0 = time;
        my $res = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
        my $took = time - $t0;
        is $res->[0], 503, 'the answer is 503';
        cmp_ok $took, '<=', $TIMEOUT + 0.1, sprintf 'within Timeout + 0.1 s (%.3f s)', $took;
        my %after = proc_status($$);
        my ($hwm0) = $before{VmHWM} =~ /(\d+)/;
        my ($hwm1) = $after{VmHWM} =~ /(\d+)/;
        cmp_ok $hwm1 - $hwm0, '<=', 16 * 1024,
            sprintf 'this process\'s peak RSS grew by %d kB', $hwm1 - $hwm0;
        my ($checker) = grep { proc_cmdline($_) =~ /for process $$ only/ } checkers();
        ok $checker, 'the checker of this process is there' or return;
        my %cs = proc_status($checker);
        my ($crss) = ($cs{VmHWM} // '0') =~ /(\d+)/;
        cmp_ok $crss, '<=', $hwm1 + 16 * 1024, "the checker's peak RSS: $crss kB";
        ok wait_for(1.5 - (time - $t0 - $took), sub { !run_children($checker) }),
            'the run is gone less than 1.5 s after the answer';
        note "log: $_" for @log;
    };
}
done_testing;
