#!perl
# Peers that lie (issue 8): a "Redis" announcing a 2-billion-element array
# or streaming a 2 GB bulk reply, a "PostgreSQL" sending a 1 GB DataRow
# or asking for SCRAM with 2^31 iterations.  Each answer is 503 within
# Timeout + 0.1 s, this process's peak memory stays where it was, and
# nothing keeps spinning: the run is killed with its memory and CPU.
use strict;
use warnings;

use FindBin;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use HETest::Ps qw(:all);
use RT::Extension::HealthEndpoint;

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/status';
my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();
my $TIMEOUT = 1;
my @peers;
END { kill 'KILL', @peers if @peers }

# A listening peer on 127.0.0.1: each connection is served by $serve in a
# process of its own.  Returns the port.
sub peer {
    my ($serve) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1) or die $!;
    my $pid = fork // die;
    if (!$pid) {
        $SIG{PIPE} = 'IGNORE';
        open STDOUT, '>', '/dev/null';  # prove waits for whoever holds it
        open STDERR, '>', '/dev/null';
        my $parent = getppid;
        while (getppid == $parent) {
            my $c = $l->accept or next;
            my $k = fork // next;
            if (!$k) { eval { $serve->($c) }; POSIX::_exit(0) }
            close $c;
            1 while waitpid(-1, POSIX::WNOHANG()) > 0;
        }
        POSIX::_exit(0);
    }
    push @peers, $pid;
    return $l->sockport;
}

sub read_n {
    my ($c, $n) = @_;
    my $buf = '';
    while (length $buf < $n) {
        my $r = sysread $c, $buf, $n - length $buf, length $buf;
        die "peer closed\n" unless $r;
    }
    return $buf;
}

# PostgreSQL: answer SSL/GSS requests with 'N', read the startup packet.
sub pg_startup {
    my ($c) = @_;
    while (1) {
        my $len = unpack 'N', read_n($c, 4);
        my $body = read_n($c, $len - 4);
        my $code = unpack 'N', $body;
        if ($code == 80877103 || $code == 80877104) { syswrite $c, 'N'; next }
        return;
    }
}

sub pg_msg { my ($type, $body) = @_; $type . pack('N', 4 + length $body) . $body }

sub stream_forever {
    my ($c) = @_;
    my $chunk = 'x' x 65536;
    1 while defined syswrite $c, $chunk;
}

my %peer = (
    'Redis: a 2-billion-element array' => [ Redis => sub {
        my ($c) = @_;
        sysread $c, my $buf, 65536;
        syswrite $c, "*2000000000\r\n";
        sleep 10;
    } ],
    'Redis: a 2 GB bulk reply, streamed' => [ Redis => sub {
        my ($c) = @_;
        sysread $c, my $buf, 65536;
        syswrite $c, "\$2000000000\r\n";
        stream_forever($c);
    } ],
    'PostgreSQL: a 1 GB DataRow' => [ Pg => sub {
        my ($c) = @_;
        pg_startup($c);
        syswrite $c, pg_msg('R', pack 'N', 0) . pg_msg('Z', 'I');
        my $type = read_n($c, 1);
        read_n($c, unpack('N', read_n($c, 4)) - 4);
        syswrite $c, pg_msg('T', pack('n', 1) . "x\0" . pack('NnNnNn', 0, 0, 23, 4, -1, 0));
        syswrite $c, 'D' . pack('N', 1 << 30) . pack('n', 1) . pack('N', (1 << 30) - 10);
        stream_forever($c);
    } ],
    'PostgreSQL: SCRAM with 2^31 iterations' => [ Pg => sub {
        my ($c) = @_;
        pg_startup($c);
        syswrite $c, pg_msg('R', pack('N', 10) . "SCRAM-SHA-256\0\0");
        my $type = read_n($c, 1);
        my $body = read_n($c, unpack('N', read_n($c, 4)) - 4);
        my ($nonce) = $body =~ /r=([^,\0]+)/ or die "no client nonce\n";
        syswrite $c, pg_msg('R', pack('N', 11)
            . "r=${nonce}srvnonce,s=c2FsdHNhbHRzYWx0c2FsdA==,i=2147483647");
        sleep 10;
    } ],
);

for my $name (sort keys %peer) {
    my ($backend, $serve) = @{ $peer{$name} };
    subtest $name => sub {
        plan skip_all => "$backend backend not built" unless $built{$backend};
        my $port = peer($serve);
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
        my %cs = proc_status($checker);
        my ($crss) = ($cs{VmHWM} // '0') =~ /(\d+)/;
        cmp_ok $crss, '<=', $hwm1 + 16 * 1024, "the checker's peak RSS: $crss kB";
        ok wait_for(1.5 - (time - $t0 - $took), sub { !run_children($checker) }),
            'the run is gone less than 1.5 s after the answer';
        note "log: $_" for @log;
    };
}
done_testing;
