package HEBench;

# Small shared helpers of bench/: statistics, result lines, running
# servers as an unprivileged user.  Self-contained (core Perl only).

use strict;
use warnings;

use Exporter qw(import);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

our @EXPORT_OK = qw(
    percentile median result note now_us
    free_port wait_port spawn stop_pid run_user wrk group_cpu
);

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

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot bind 127.0.0.1:0: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub wait_port {
    my ($port, $pid, $timeout) = @_;
    my $until = Time::HiRes::time() + ($timeout || 30);
    while (Time::HiRes::time() < $until) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 1);
        return 1 if $s;
        return 0 if $pid && waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

# The user servers run as: nobody when we are root, else ourselves.
sub run_user {
    return () unless $> == 0;
    my @pw = getpwnam('nobody') or die "running as root but there is no user nobody\n";
    return (uid => $pw[2], gid => $pw[3], name => 'nobody');
}

# Fork and exec @$cmd in a new session (so stop_pid can signal the whole
# group), as run_user() (unless as_user => 0), output appended to $log.
# Returns the pid.
sub spawn {
    my (%a) = @_;
    my %u = ($a{as_user} // 1) ? run_user() : ();
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        eval {
            POSIX::setsid();
            open STDIN, '<', '/dev/null' or die "stdin: $!\n";
            open STDOUT, '>>', $a{log} or die "open $a{log}: $!\n";
            open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
            if (%u) {
                $) = "$u{gid} $u{gid}";
                POSIX::setgid($u{gid}) or die "setgid: $!\n";
                POSIX::setuid($u{uid}) or die "setuid: $!\n";
                die "still root\n" if $> == 0 || $< == 0;
                @ENV{qw(USER LOGNAME HOME)} = ($u{name}, $u{name}, '/');
            }
            chdir($a{dir} // '/');
            %ENV = (%ENV, %{ $a{env} || {} });
            exec { $a{cmd}[0] } @{ $a{cmd} } or die "exec $a{cmd}[0]: $!\n";
        };
        print STDERR "spawn failed: $@";
        POSIX::_exit(127);
    }
    return $pid;
}

# TERM the process group, wait (bounded), then KILL what is left.
sub stop_pid {
    my ($pid, $wait) = @_;
    return unless $pid;
    kill 'TERM', -$pid or kill 'TERM', $pid;
    my $until = Time::HiRes::time() + ($wait || 10);
    while (Time::HiRes::time() < $until) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        last if $r == $pid || $r == -1;
        Time::HiRes::sleep(0.05);
    }
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    kill 'KILL', -$pid;                 # stragglers of the group (workers)
}

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
