package HEBench;

# Small shared helpers of bench/: statistics, result lines, wrk runs, CPU
# accounting.  The servers (Starman, PostgreSQL, Redis, RT) come from
# t/lib (HETest::Servers, HETest::RT), which scripts using HEBench find in
# @INC.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use POSIX ();
use Time::HiRes ();

my $DIR;
BEGIN { $DIR = dirname(abs_path(__FILE__)) }
use lib "$DIR/../../t/lib";

our @EXPORT_OK = qw(percentile median result note now_us wrk group_cpu);

# ---- statistics -------------------------------------------------------

# Nearest-rank percentile (p in 0..100) of a list of numbers.
sub percentile {
    my ($p, @v) = @_;
    return undef unless @v;
    @v = sort { $a <=> $b } @v;
    my $rank = int($p / 100 * @v + 0.999999);
    $rank = 1 if $rank < 1;
    $rank = @v if $rank > @v;
    return $v[$rank - 1];
}

sub median { percentile(50, @_) }

sub now_us { Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC()) * 1e6 }

# ---- output -----------------------------------------------------------

# Machine-readable result line, collected by bench/run.
sub result {
    my ($key, $value) = @_;
    $value = 'NA' unless defined $value;
    print "RESULT $key $value\n";
}

sub note { print "  ", @_, "\n" }

# ---- processes --------------------------------------------------------

# CPU seconds (user + system) used so far by the processes of a process
# group: the live members, plus the reaped children of the leader (Starman
# workers that exited).
sub group_cpu {
    my ($pgid) = @_;
    my $tick = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    my $sum = 0;
    opendir my $dh, '/proc' or return undef;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = <$fh> // next;
        $stat =~ s/^.*\)\s+//s;              # after "pid (comm) "
        my @f = split ' ', $stat;           # $f[0] is field 3 (state)
        next unless $f[2] == $pgid;         # field 5: pgrp
        $sum += $f[11] + $f[12];            # fields 14, 15: utime, stime
        $sum += $f[13] + $f[14] if $pid == $pgid;   # cutime, cstime
    }
    return $sum / $tick;
}

# Run wrk once against url (or 127.0.0.1:port with path) for seconds
# (4; rounded, at least 1), with connections (8) and threads (1).  count
# => N stops after N answers (one thread, soak-count.lua; seconds is then
# the upper bound); close => 1 sends each request on a new connection, as
# load balancers do.  Returns { raw, requests, seconds, rps, non2xx,
# socket_errors, errors (both), p50, p99, max (ms) } or dies.
sub wrk {
    my (%a) = @_;
    my $url = $a{url} // "http://127.0.0.1:$a{port}$a{path}";
    my $secs = $a{seconds} // 4;
    $secs = $secs < 1 ? 1 : int($secs + 0.5);
    local $ENV{WRK_REQUESTS} = $a{count} // 0;
    my @cmd = ('wrk', '--latency', '-t', $a{count} ? 1 : $a{threads} // 1,
               '-c', $a{connections} // 8, '-d', "${secs}s", '--timeout', '5s',
               ($a{count} ? ('-s', "$DIR/soak-count.lua") : ()),
               ($a{close} ? ('-H', 'Connection: close') : ()), $url);
    open my $fh, '-|', @cmd or die "wrk: $!\n";
    my $out = do { local $/; <$fh> };
    close $fh or die "wrk failed ($?):\n$out";
    my %r = (raw => $out, non2xx => 0, socket_errors => 0);
    # "2000 requests in 410.61ms," (short runs), "... in 2.01s,", "1.00m"
    my $unit;
    ($r{requests}, $r{seconds}, $unit)
        = $out =~ /(\d+) requests in ([\d.]+)(us|ms|s|m|h),/
        or die "wrk: cannot parse:\n$out";
    $r{seconds} *= { us => 1e-6, ms => 1e-3, s => 1, m => 60, h => 3600 }->{$unit};
    ($r{rps}) = $out =~ /^Requests\/sec:\s+([\d.]+)/m
        or die "wrk: no Requests/sec in:\n$out";
    $r{non2xx} = $1 if $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $r{socket_errors} = $1 + $2 + $3 + $4;
    }
    $r{errors} = $r{non2xx} + $r{socket_errors};
    my %ms = (us => 0.001, ms => 1, s => 1000, m => 60000);
    for ([p50 => qr/^\s+50%\s+([\d.]+)(us|ms|s|m)\b/m],
         [p99 => qr/^\s+99%\s+([\d.]+)(us|ms|s|m)\b/m],
         [max => qr/Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b/]) {
        my ($k, $re) = @$_;
        $r{$k} = $out =~ $re ? $1 * $ms{$2} : undef;
    }
    return \%r;
}

1;
