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

use lib abs_path(dirname(__FILE__) . '/../../t/lib');

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

# Run wrk once; returns { rps => ..., requests => ..., errors => ...,
# p50_ms => ..., p99_ms => ... } or dies.
sub wrk {
    my (%a) = @_;
    my @cmd = ('wrk', '-t', $a{threads} // 1, '-c', $a{connections} // 8,
               '-d', ($a{seconds} // 4) . 's', '--latency', '--timeout', '5s',
               $a{url});
    open my $fh, '-|', @cmd or die "wrk: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "wrk failed ($?):\n$out" if $?;
    my %r = (raw => $out);
    ($r{rps}) = $out =~ /^Requests\/sec:\s+([\d.]+)/m
        or die "wrk: no Requests/sec in:\n$out";
    ($r{requests}) = $out =~ /^\s*(\d+) requests in/m;
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    my @se = $out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
    $r{errors} = ($non2xx // 0);
    $r{errors} += $_ for @se;
    for my $p (50, 99) {
        my ($v, $u) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s)\b/m or next;
        $r{"p${p}_ms"} = $v * ($u eq 'us' ? 1e-3 : $u eq 's' ? 1e3 : 1);
    }
    return \%r;
}

1;
